"""SqliteStore only: pragmas, migrations, version refusal, several processes, locking."""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.store.claimer import claim_until_empty
from tests.store.conftest import assert_intact
from tests.store.samples import AT, model_failed, started, typical_journal
from tether.errors import ConfigurationError, LeaseLostError, RunStateError, SchemaVersionError
from tether.events import Event, RunStarted
from tether.status import RunStatus
from tether.store import Lease, SqliteStore
from tether.store import sqlite as sqlite_store
from tether.store.codec import encode_event
from tether.store.migrations import MIGRATIONS, SCHEMA_VERSION, split_statements

LONG = timedelta(minutes=5)


def pragma(store: SqliteStore, name: str) -> object:
    # The connection is private; the settings it carries are what this test is about.
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.anyio
async def test_pragmas_full(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    try:
        assert pragma(store, "journal_mode") == "wal"
        assert pragma(store, "synchronous") == 2  # FULL
        assert pragma(store, "foreign_keys") == 1
        assert pragma(store, "busy_timeout") == 5000
        assert store._conn.isolation_level is None
    finally:
        await store.close()


@pytest.mark.anyio
async def test_pragmas_normal(tmp_path: Path) -> None:
    store = SqliteStore(
        tmp_path / "t.db", synchronous="NORMAL", busy_timeout=timedelta(milliseconds=250)
    )
    try:
        assert pragma(store, "synchronous") == 1  # NORMAL
        assert pragma(store, "busy_timeout") == 250
    finally:
        await store.close()
    # WAL is a property of the file: a plain connection sees it too.
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "t.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SqliteStore(tmp_path / "t.db", busy_timeout=timedelta(seconds=-1))
    assert not (tmp_path / "t.db").exists()


def tables(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: [c[1] for c in conn.execute(f"PRAGMA table_info({name})")] for name in names}
    finally:
        conn.close()


@pytest.mark.anyio
async def test_migrates_a_new_file_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "t.db"
    await SqliteStore(path).close()
    assert path.exists()
    schema = tables(path)
    assert schema["runs"] == [
        "run_key",
        "run_id",
        "agent",
        "agent_ref",
        "user_id",
        "task",
        "status",
        "created_at",
        "updated_at",
        "finished_at",
        "lease_owner",
        "lease_expires_at",
        "lease_epoch",
        "attempts",
        "event_count",
    ]
    assert schema["events"] == ["run_key", "seq", "kind", "body"]
    await SqliteStore(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {
            "runs_claim",
            "runs_queue",
            "runs_created",
            "runs_agent",
            "runs_finished",
        } <= indexes
        (parent,) = conn.execute(
            "SELECT \"table\", on_delete FROM pragma_foreign_key_list('events')"
        )
        assert parent == ("runs", "CASCADE")
        params = {"status": "running", "now": 0.0, "limit": 65}
        first_free = query_plan(conn, sqlite_store._FIRST_FREE, params)
        assert "INDEX runs_queue (status=?)" in first_free
        assert "TEMP B-TREE FOR ORDER BY" not in first_free  # no sort of all candidates
        for lapsed in (sqlite_store._LAPSED_COUNT, sqlite_store._OLDEST_LAPSED):
            plan = query_plan(conn, lapsed, params)
            assert "INDEX runs_claim (status=? AND lease_expires_at<?)" in plan
    finally:
        conn.close()
    assert_intact(path)


def query_plan(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> str:
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def old_file(path: Path, version: int) -> sqlite3.Connection:
    """A database at schema ``version``, created by that version's migrations."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for number in range(1, version + 1):
        for statement in split_statements(MIGRATIONS[number - 1]):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (number,))
    return conn


def write_old_run(
    conn: sqlite3.Connection,
    journal: list[Event],
    *,
    status: RunStatus,
    created_at: float,
    lease: tuple[str, float, int] | None = None,
    finished_at: float | None = None,
) -> None:
    """Write a run as versions 1 and 2 did: events keyed by the text run id."""
    first = journal[0]
    assert isinstance(first, RunStarted)
    owner, expires, epoch = lease or (None, None, 0)
    conn.execute(
        "INSERT INTO runs (run_id, agent, agent_ref, user_id, task, status, created_at,"
        " updated_at, finished_at, lease_owner, lease_expires_at, lease_epoch, attempts,"
        " event_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            first.run_id,
            first.agent,
            first.agent_ref,
            first.user,
            first.task,
            status.value,
            created_at,
            created_at,
            finished_at,
            owner,
            expires,
            epoch,
            int(lease is not None),
            len(journal),
        ),
    )
    conn.executemany(
        "INSERT INTO events (run_id, seq, kind, body) VALUES (?, ?, ?, ?)",
        [(e.run_id, seq, e.kind, encode_event(e)) for seq, e in enumerate(journal, 1)],
    )


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        conn.close()


@pytest.mark.anyio
async def test_upgrades_a_version_1_file_keeping_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = old_file(path, 1)
    first = started()
    write_old_run(conn, [first], status=RunStatus.PENDING, created_at=1.0)
    conn.close()

    store = SqliteStore(path)
    try:
        assert list(await store.events(first.run_id)) == [first]
        lease = await store.claim("w", lease_for=LONG)
        assert lease is not None and lease.run_id == first.run_id
    finally:
        await store.close()
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))
    assert_intact(path)


@pytest.mark.anyio
async def test_upgrades_a_version_2_file_keeping_runs_events_and_order(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = old_file(path, 2)
    # Same creation time: claim order falls back to insertion order, which must survive.
    queued = [started(), started()]
    for first in queued:
        write_old_run(conn, [first], status=RunStatus.PENDING, created_at=5.0)
    busy = typical_journal(2)[:-2]  # running, mid-way, held by w1 at epoch 3
    write_old_run(conn, busy, status=RunStatus.RUNNING, created_at=2.0, lease=("w1", 10**10, 3))
    done = typical_journal(4)
    write_old_run(conn, done, status=RunStatus.COMPLETED, created_at=1.0, finished_at=1.5)
    conn.close()

    store = SqliteStore(path)
    try:
        for journal in ([queued[0]], [queued[1]], busy, done):
            assert list(await store.events(journal[0].run_id)) == journal
        listed = [r.run_id for r in await store.list_runs()]
        assert listed == [queued[1].run_id, queued[0].run_id, busy[0].run_id, done[0].run_id]
        record = await store.get_run(busy[0].run_id)
        assert record is not None
        assert (record.status, record.lease_owner, record.events) == (
            RunStatus.RUNNING,
            "w1",
            len(busy),
        )
        claimed = [await store.claim("w2", lease_for=LONG) for _ in range(3)]
        assert [c.run_id if c else None for c in claimed] == [q.run_id for q in queued] + [None]
        # The old lease still writes, after the migrated rows.
        held = Lease(run_id=busy[0].run_id, owner="w1", epoch=3, attempts=1, expires_at=AT)
        more = model_failed(busy[0].run_id, step=3)
        await store.append([more], held)
        assert list(await store.events(busy[0].run_id)) == [*busy, more]
        # Pruning still cascades into the (migrated) journal.
        assert await store.prune(finished_before=datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC)) == 1
        assert await store.events(done[0].run_id) == []
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (
            len(queued) + len(busy) + 1,
        )
    finally:
        conn.close()
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))
    assert_intact(path)


@pytest.mark.anyio
async def test_migrates_an_existing_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.touch()
    store = SqliteStore(path)
    await store.create_run(started())
    await store.close()
    assert_intact(path)


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.mark.anyio
@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_a_newer_file_is_refused_untouched(tmp_path: Path, journal_mode: str) -> None:
    path = tmp_path / "t.db"
    first = started()
    store = SqliteStore(path)
    await store.create_run(first)
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 41,))
    conn.commit()
    conn.close()
    before = snapshot(path)
    os.utime(path, ns=(before[1] - 10**9, before[1] - 10**9))  # an mtime a write would move
    before = snapshot(path)

    with pytest.raises(SchemaVersionError) as raised:
        SqliteStore(path)
    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 41}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "upgrade tether" in message
    assert str(path) in message
    assert isinstance(raised.value, ConfigurationError)
    assert snapshot(path) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal_mode
    finally:
        conn.close()


@pytest.mark.anyio
async def test_data_survives_reopening_and_is_shared_between_connections(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    one, two = SqliteStore(path), SqliteStore(path)
    try:
        first = started()
        await one.create_run(first)
        lease = await two.claim("w2", lease_for=LONG)
        assert lease is not None and lease.run_id == first.run_id
        taken = await one.claim("w1", lease_for=LONG, run_id=first.run_id, force=True)
        assert taken is not None and taken.epoch == 2
        with pytest.raises(LeaseLostError):
            await two.append([model_failed(first.run_id)], lease)
        await one.append([model_failed(first.run_id)], taken)
    finally:
        await one.close()
        await two.close()
    again = SqliteStore(path)
    try:
        assert list(await again.events(first.run_id)) == [first, model_failed(first.run_id)]
        record = await again.get_run(first.run_id)
        assert record is not None
        assert (record.status, record.lease_owner, record.attempts) == (RunStatus.RUNNING, "w1", 2)
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_failed_write_rolls_back_and_the_store_goes_on(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    try:
        first = started()
        await store.create_run(first)
        with pytest.raises(RunStateError):
            await store.create_run(first)
        assert not store._conn.in_transaction
        lease = await store.claim("w", lease_for=LONG)
        assert lease is not None
        stale = await store.claim("x", lease_for=LONG, run_id=first.run_id, force=True)
        assert stale is not None
        with pytest.raises(LeaseLostError):
            await store.append([model_failed(first.run_id)], lease)
        assert not store._conn.in_transaction
        await store.append([model_failed(first.run_id)], stale)
        assert len(await store.events(first.run_id)) == 2
    finally:
        await store.close()


@pytest.mark.anyio
async def test_writes_wait_for_another_writer_then_give_up(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path, busy_timeout=timedelta(milliseconds=100))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.create_run(started())
        assert not store._conn.in_transaction
        assert list(await store.list_runs()) == []  # readers are not blocked (WAL)
        blocker.execute("ROLLBACK")
        await store.create_run(started())
        assert len(await store.list_runs()) == 1
    finally:
        blocker.close()
        await store.close()


@pytest.mark.anyio
async def test_the_store_is_unusable_after_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.close()
    await store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        await store.get_run("r")


@pytest.mark.anyio
async def test_processes_never_claim_the_same_run_twice(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    ids = []
    for _ in range(200):
        run = started()
        ids.append(run.run_id)
        await store.create_run(run)
    await store.close()

    workers = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=claim_until_empty, args=(str(path), f"w{i}", barrier, results))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        claims = collect(results, processes)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():  # pragma: no cover - only when the test already failed
                process.kill()
    assert all(p.exitcode == 0 for p in processes)

    every_claim = [run_id for claimed in claims.values() for run_id in claimed]
    assert Counter(every_claim) == Counter(ids)  # each run exactly once
    assert sum(1 for claimed in claims.values() if claimed) >= 2  # they really competed

    store = SqliteStore(path)
    try:
        for owner, claimed in claims.items():
            for run_id in claimed:
                record = await store.get_run(run_id)
                assert record is not None
                assert (record.lease_owner, record.attempts, record.events) == (owner, 1, 2)
                journal = await store.events(run_id)
                assert [e.kind for e in journal] == ["run_started", "model_failed"]
        assert await store.claim("late", lease_for=LONG) is None
    finally:
        await store.close()
    assert_intact(path)


def collect(results: Any, processes: list[Any]) -> dict[str, list[str]]:
    """Each worker's claims; fails at once if a worker died instead of reporting."""
    claims: dict[str, list[str]] = {}
    while len(claims) < len(processes):
        try:
            owner, claimed = results.get(timeout=0.2)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead, f"a worker died with exit code {dead[0]}"
            continue
        claims[owner] = claimed
    return claims


def test_split_statements_respects_strings_comments_and_triggers() -> None:
    script = """
    CREATE TABLE t (a TEXT DEFAULT 'x;y'); -- a comment; with a semicolon
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET a = 'z;' WHERE a = new.a;
    END;
    SELECT 1
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].startswith("CREATE TABLE")
    assert "-- a comment; with a semicolon" in statements[1]
    assert statements[1].rstrip().endswith("END;")
    assert statements[2].replace(" ", "").replace("\n", "") == "SELECT1;"
    conn = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()
