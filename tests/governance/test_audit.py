"""The hash-chained audit log: both stores, tampering, secrets, concurrent writers, CLI."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from tether.governance.audit import (
    AuditAction,
    AuditEntry,
    AuditLog,
    AuditProblem,
    audit_log,
    chain_hash,
    entry_body,
    hash_arguments,
)
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-7f3a9c0e-do-not-store"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = (
        InMemoryStore(clock=FakeClock())
        if request.param == "memory"
        else SqliteStore(tmp_path / "audit.db")
    )
    yield opened
    await opened.close()


async def _fill(log: AuditLog, count: int, *, run_id: str = "run_a") -> list[AuditEntry]:
    return [
        await log.record(
            AuditAction.ALLOW,
            actor="worker:w1",
            run_id=run_id,
            step=i,
            subject="charge",
            arguments={"n": i},
            reason=f"call {i}",
        )
        for i in range(count)
    ]


async def test_record_chains_entries_and_verify_accepts_them(store: Store) -> None:
    log = audit_log(store)
    first, second, third = await _fill(log, 3)

    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    assert first.prev_hash == ""
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    for entry in (first, second, third):
        assert entry.hash == chain_hash(entry.prev_hash, entry_body(entry))
        assert entry.at.tzinfo is not None
    assert first.args_hash == hash_arguments({"n": 0})
    assert json.loads(entry_body(first)).keys() == {
        "seq",
        "at",
        "actor",
        "action",
        "run_id",
        "step",
        "subject",
        "args_hash",
        "reason",
    }

    report = await log.verify()
    assert report.ok and report.checked == 3 and report.broken_seq is None
    assert list(await audit_log(store).entries()) == [first, second, third]


async def test_empty_log_verifies(store: Store) -> None:
    report = await audit_log(store).verify()
    assert report.ok and report.checked == 0


async def test_entries_filter_by_run_time_and_limit(store: Store) -> None:
    log = audit_log(store)
    await _fill(log, 2, run_id="run_a")
    await _fill(log, 3, run_id="run_b")

    assert [e.seq for e in await log.entries(run_id="run_b")] == [3, 4, 5]
    assert [e.seq for e in await log.entries(limit=2)] == [1, 2]
    assert [e.seq for e in await log.entries(run_id="run_b", limit=1)] == [3]
    future = datetime.now(UTC) + timedelta(days=3650)
    assert await log.entries(since=future) == []
    everything = await log.entries(since=datetime(2000, 1, 1, tzinfo=UTC))
    assert len(everything) == 5


async def test_export_jsonl_writes_one_verifiable_line_per_entry(store: Store) -> None:
    log = audit_log(store)
    entries = await _fill(log, 4)
    stream = io.StringIO()

    assert await log.export_jsonl(stream) == 4
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]
    assert [line["hash"] for line in lines] == [e.hash for e in entries]
    # The export alone is enough to re-check the chain.
    prev = ""
    for line in lines:
        body = {k: v for k, v in line.items() if k not in ("hash", "prev_hash")}
        assert line["prev_hash"] == prev
        assert (
            chain_hash(prev, json.dumps(body, sort_keys=True, separators=(",", ":")))
            == (line["hash"])
        )
        prev = line["hash"]


async def test_memory_log_is_kept_per_store() -> None:
    one, two = InMemoryStore(), InMemoryStore()
    await audit_log(one).record(AuditAction.DENY, actor="system")

    assert len(await audit_log(one).entries()) == 1
    assert await audit_log(two).entries() == []


async def test_memory_log_detects_an_edited_entry() -> None:
    store = InMemoryStore()
    log = audit_log(store)
    await _fill(log, 3)
    rows = log._rows  # type: ignore[attr-defined]
    edited = rows[1].entry
    rows[1] = type(rows[1])(
        AuditEntry(**{**edited.to_dict(), "at": edited.at, "reason": "nothing to see"}),
        rows[1].body,
    )

    report = await log.verify()
    assert not report.ok
    assert (report.broken_seq, report.problem, report.checked) == (2, AuditProblem.EDITED, 1)


async def test_record_refuses_an_empty_action(store: Store) -> None:
    with pytest.raises(ValueError, match="action"):
        await audit_log(store).record("", actor="system")


# --- SQLite: tampering with the file, secrets, concurrent processes -------------------


def _tamper(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


async def _filled_file(tmp_path: Path, count: int = 5) -> Path:
    db = tmp_path / "audit.db"
    store = SqliteStore(db)
    try:
        await _fill(audit_log(store), count)
    finally:
        await store.close()
    return db


async def _verify_file(db: Path) -> tuple[bool, int | None, AuditProblem | None, str | None]:
    store = SqliteStore(db)
    try:
        report = await audit_log(store).verify()
    finally:
        await store.close()
    return report.ok, report.broken_seq, report.problem, report.detail


@pytest.mark.parametrize(
    ("statements", "broken_seq", "problem"),
    [
        pytest.param(
            ["UPDATE audit SET body = replace(body, 'call 2', 'call X') WHERE seq = 3"],
            3,
            AuditProblem.EDITED,
            id="edited-body",
        ),
        pytest.param(
            ["UPDATE audit SET reason = 'call X' WHERE seq = 2"],
            2,
            AuditProblem.EDITED,
            id="edited-column",
        ),
        pytest.param(["DELETE FROM audit WHERE seq = 3"], 3, AuditProblem.MISSING, id="deleted"),
        pytest.param(["DELETE FROM audit WHERE seq = 1"], 1, AuditProblem.MISSING, id="first"),
        pytest.param(
            [
                "UPDATE audit SET body = (SELECT body FROM audit WHERE seq = 4) WHERE seq = 2",
                "UPDATE audit SET body = (SELECT body FROM audit WHERE seq = 3) WHERE seq = 4",
            ],
            2,
            AuditProblem.REORDERED,
            id="swapped-bodies",
        ),
        pytest.param(
            ["UPDATE audit SET hash = '00' || substr(hash, 3) WHERE seq = 4"],
            4,
            AuditProblem.EDITED,
            id="edited-hash",
        ),
        pytest.param(
            ["UPDATE audit SET prev_hash = 'x', hash = 'y' WHERE seq = 5"],
            5,
            AuditProblem.EDITED,
            id="edited-prev-hash",
        ),
    ],
)
async def test_tampering_is_detected(
    tmp_path: Path, statements: list[str], broken_seq: int, problem: AuditProblem
) -> None:
    db = await _filled_file(tmp_path)
    assert (await _verify_file(db))[0]

    _tamper(db, *statements)

    ok, seq, found, detail = await _verify_file(db)
    assert not ok
    assert (seq, found) == (broken_seq, problem)
    assert detail is not None and f"seq {broken_seq}" in detail


async def test_a_rehashed_row_that_skips_its_predecessor_is_unlinked(tmp_path: Path) -> None:
    db = await _filled_file(tmp_path)
    conn = sqlite3.connect(db)
    body = conn.execute("SELECT body FROM audit WHERE seq = 3").fetchone()[0]
    # A forger who recomputes this row's hash from a wrong prev_hash still breaks the link.
    conn.execute("UPDATE audit SET prev_hash = '', hash = ? WHERE seq = 3", (chain_hash("", body),))
    conn.commit()
    conn.close()

    ok, seq, problem, _ = await _verify_file(db)
    assert (ok, seq, problem) == (False, 3, AuditProblem.UNLINKED)


def _file_bytes(directory: Path, prefix: str) -> bytes:
    """The database file and its -wal / -shm companions, concatenated."""
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith(prefix))


async def test_arguments_are_never_stored_raw(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = SqliteStore(db)
    entry = await audit_log(store).record(
        AuditAction.PRIVILEGED_CALL, actor="ana", subject="deploy", arguments={"token": SECRET}
    )
    await store.close()

    assert entry.args_hash == hash_arguments({"token": SECRET})
    stored = _file_bytes(tmp_path, "audit")
    assert entry.hash.encode() in stored  # the row is in the bytes we grep
    assert SECRET.encode() not in stored
    assert b"sk-live" not in stored


_WRITER = """
import asyncio, sys
from tether.governance.audit import audit_log
from tether.store import SqliteStore

async def main(path, name, count):
    store = SqliteStore(path)
    log = audit_log(store)
    for i in range(count):
        await log.record("allow", actor=name, step=i, arguments={"i": i})
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_concurrent_processes_form_one_unbroken_chain(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    per_writer = 200
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(db), name, str(per_writer)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=50)
        assert writer.returncode == 0, err

    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, actor FROM audit ORDER BY seq").fetchall()
    conn.close()
    assert [seq for seq, _ in rows] == list(range(1, 2 * per_writer + 1))
    actors = [actor for _, actor in rows]
    assert actors.count("p1") == actors.count("p2") == per_writer
    ok, seq, _, detail = anyio.run(_verify_file, db)
    assert ok, detail
    assert seq is None


# --- the command line, as real processes ---------------------------------------------


def _cli(db: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("TETHER_STORE", "NO_COLOR")}
    env["TETHER_STORE"] = f"sqlite:///{db}"
    env["COLUMNS"] = "200"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether", "audit", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=50,
        )

    return run


async def test_cli_verify_exits_0_then_1_naming_the_broken_seq(tmp_path: Path) -> None:
    db = await _filled_file(tmp_path)
    cli = _cli(db)

    done = cli("verify")
    assert done.returncode == 0, done.stderr
    assert "ok: 5 entries" in done.stdout

    _tamper(db, "DELETE FROM audit WHERE seq = 4")
    broken = cli("verify")
    assert broken.returncode == 1
    assert "seq 4" in broken.stdout and "missing" in broken.stdout

    as_json = json.loads(cli("verify", "--json").stdout)
    assert as_json["ok"] is False and as_json["broken_seq"] == 4
    assert as_json["problem"] == "missing" and as_json["checked"] == 3


async def test_cli_export_jsonl_filters_by_run_and_age(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = SqliteStore(db)
    log = audit_log(store)
    await _fill(log, 2, run_id="run_a")
    await _fill(log, 3, run_id="run_b")
    await store.close()
    cli = _cli(db)

    everything = cli("export", "--jsonl")
    assert everything.returncode == 0, everything.stderr
    assert [json.loads(x)["seq"] for x in everything.stdout.splitlines()] == [1, 2, 3, 4, 5]

    only_b = cli("export", "--jsonl", "--run", "run_b", "--since", "7d")
    assert only_b.returncode == 0, only_b.stderr
    lines = [json.loads(x) for x in only_b.stdout.splitlines()]
    assert [(x["seq"], x["run_id"]) for x in lines] == [(3, "run_b"), (4, "run_b"), (5, "run_b")]

    bad = cli("export", "--jsonl", "--since", "a week")
    assert bad.returncode == 2
    assert "not an age" in bad.stderr
