"""SqliteStore group commit: writes of one event-loop turn share one transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import assert_intact
from tests.store.samples import model_failed, started
from tether.errors import LeaseLostError, RunNotFoundError, RunStateError
from tether.events import Event
from tether.status import RunStatus
from tether.store import Lease, SqliteStore

pytestmark = pytest.mark.anyio

LONG = timedelta(minutes=5)


@contextmanager
def traced(store: SqliteStore) -> Iterator[list[str]]:
    """Every SQL statement the store's connection runs meanwhile, in order."""
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        store._conn.set_trace_callback(None)


def commits(statements: list[str]) -> int:
    return statements.count("COMMIT")


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    store = SqliteStore(tmp_path / "t.db")
    yield store
    await store.close()
    assert_intact(tmp_path / "t.db")


async def claimed_runs(store: SqliteStore, count: int) -> list[Lease]:
    leases = []
    for _ in range(count):
        lease = await store.create_run(started(), owner="w", lease_for=LONG)
        assert lease is not None
        leases.append(lease)
    return leases


async def journal(store: SqliteStore, lease: Lease) -> list[Event]:
    return list(await store.events(lease.run_id))


async def test_concurrent_appends_of_one_loop_turn_share_one_commit(store: SqliteStore) -> None:
    leases = await claimed_runs(store, 8)
    with traced(store) as statements:
        await asyncio.gather(*(store.append([model_failed(x.run_id)], x) for x in leases))
    assert commits(statements) == 1
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("SAVEPOINT tether_write") == len(leases)
    for lease in leases:
        assert [e.kind for e in await journal(store, lease)] == ["run_started", "model_failed"]
        record = await store.get_run(lease.run_id)
        assert record is not None and record.events == 2


async def test_a_lone_write_commits_at_once_without_a_savepoint(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")

    async def main() -> list[str]:
        lease = await store.create_run(started(), owner="w", lease_for=LONG)
        assert lease is not None
        with traced(store) as statements:
            # Nothing else is ready in this loop: the append must finish without ever
            # suspending (a coroutine that never yields stops at its first send).
            pending = store.append([model_failed(lease.run_id)], lease)
            with pytest.raises(StopIteration):
                pending.send(None)
        return statements

    try:
        statements = await asyncio.to_thread(asyncio.run, main())
    finally:
        await store.close()
    assert commits(statements) == 1
    assert not any(s.startswith("SAVEPOINT") for s in statements)


async def test_one_fenced_write_fails_alone_and_the_others_persist(store: SqliteStore) -> None:
    good, stale, other = await claimed_runs(store, 3)
    taken = await store.claim("thief", lease_for=LONG, run_id=stale.run_id, force=True)
    assert taken is not None
    ghost = Lease(run_id="run_gone", owner="w", epoch=1, attempts=1, expires_at=good.expires_at)
    twin = started(good.run_id)
    with traced(store) as statements:
        results = await asyncio.gather(
            store.append([model_failed(good.run_id)], good),
            store.append([model_failed(stale.run_id)], stale),
            store.append([model_failed(ghost.run_id)], ghost),
            store.create_run(twin),
            store.append([model_failed(other.run_id, 2)], other),
            return_exceptions=True,
        )
    assert results[0] is None and results[4] is None
    assert isinstance(results[1], LeaseLostError)
    assert isinstance(results[2], RunNotFoundError)
    assert isinstance(results[3], RunStateError)
    assert commits(statements) == 1
    assert statements.count("ROLLBACK TO tether_write") == 3
    assert [e.kind for e in await journal(store, good)][-1] == "model_failed"
    assert [e.kind for e in await journal(store, other)][-1] == "model_failed"
    assert [e.kind for e in await journal(store, stale)] == ["run_started"]
    record = await store.get_run(stale.run_id)
    assert record is not None and (record.events, record.lease_owner) == (1, "thief")


async def test_a_write_failing_halfway_is_undone_alone(store: SqliteStore) -> None:
    good, broken = await claimed_runs(store, 2)
    # A wrong event count makes the event insert collide after the row was updated.
    store._conn.execute("UPDATE runs SET event_count = 0 WHERE run_id = ?", (broken.run_id,))
    results = await asyncio.gather(
        store.append([model_failed(broken.run_id)], broken),
        store.append([model_failed(good.run_id)], good),
        return_exceptions=True,
    )
    assert isinstance(results[0], sqlite3.IntegrityError) and results[1] is None
    record = await store.get_run(broken.run_id)
    assert record is not None and record.events == 0  # its UPDATE was rolled back too
    assert len(await journal(store, broken)) == 1
    assert len(await journal(store, good)) == 2


async def test_a_write_refused_before_queueing_leaves_the_batch_alone(store: SqliteStore) -> None:
    one, two = await claimed_runs(store, 2)
    results = await asyncio.gather(
        store.append([model_failed(two.run_id)], one),  # another run's event
        store.append([model_failed(two.run_id)], two),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError) and results[1] is None
    assert len(await journal(store, one)) == 1
    assert len(await journal(store, two)) == 2


class FailingCommit:
    """A connection whose COMMIT fails (as on a full or failing disk)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self.conn.executemany(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction


async def test_a_failed_commit_fails_every_caller_and_writes_nothing(store: SqliteStore) -> None:
    leases = await claimed_runs(store, 4)
    real = store._conn
    store._conn = FailingCommit(real)  # type: ignore[assignment]
    try:
        results = await asyncio.gather(
            *(store.append([model_failed(x.run_id)], x) for x in leases),
            store.claim("w2", lease_for=LONG, run_id=leases[0].run_id, force=True),
            return_exceptions=True,
        )
    finally:
        store._conn = real
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    assert not real.in_transaction
    for lease in leases:
        assert len(await journal(store, lease)) == 1
        record = await store.get_run(lease.run_id)
        assert record is not None and record.events == 1 and record.lease_owner == "w"
    # The store goes on.
    await asyncio.gather(*(store.append([model_failed(x.run_id)], x) for x in leases))
    assert all([len(await journal(store, x)) == 2 for x in leases])


async def test_a_batch_that_cannot_begin_fails_every_caller(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path, busy_timeout=timedelta(milliseconds=50))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        leases = await claimed_runs(store, 3)
        blocker.execute("BEGIN IMMEDIATE")
        results = await asyncio.gather(
            *(store.append([model_failed(x.run_id)], x) for x in leases),
            return_exceptions=True,
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        blocker.execute("ROLLBACK")
        assert all([len(await journal(store, x)) == 1 for x in leases])
    finally:
        blocker.close()
        await store.close()


async def test_concurrent_claims_share_a_commit_and_keep_their_semantics(
    store: SqliteStore,
) -> None:
    runs = [started() for _ in range(5)]
    for run in runs:
        await store.create_run(run)
    with traced(store) as statements:
        leases = await asyncio.gather(*(store.claim("w", lease_for=LONG) for _ in range(6)))
    assert commits(statements) == 1
    assert leases[-1] is None  # five runs, six claims
    claimed = [lease for lease in leases if lease is not None]
    assert [x.run_id for x in claimed] == [r.run_id for r in runs]  # oldest first, once each
    assert {(x.epoch, x.attempts) for x in claimed} == {(1, 1)}
    with traced(store) as statements:
        again = await asyncio.gather(
            *(store.claim("w2", lease_for=LONG, run_id=r.run_id, force=True) for r in runs),
            *(store.append([model_failed(x.run_id)], x) for x in claimed),
            return_exceptions=True,
        )
    assert commits(statements) == 1
    retaken = again[: len(runs)]
    assert all(isinstance(x, Lease) and (x.epoch, x.attempts) == (2, 2) for x in retaken)
    # The claims come first in the batch, so the old leases' appends are fenced.
    assert all(isinstance(x, LeaseLostError) for x in again[len(runs) :])


async def test_release_and_final_append_in_a_batch(store: SqliteStore) -> None:
    one, two = await claimed_runs(store, 2)
    await asyncio.gather(
        store.append([model_failed(one.run_id)], one, release=True), store.release(two)
    )
    for lease in (one, two):
        record = await store.get_run(lease.run_id)
        assert record is not None
        assert (record.status, record.lease_owner, record.attempts) == (RunStatus.PENDING, None, 0)
    with pytest.raises(LeaseLostError):
        await store.append([model_failed(one.run_id)], one)


async def test_a_write_cancelled_while_queued_is_not_written(store: SqliteStore) -> None:
    keep, drop = await claimed_runs(store, 2)
    kept = asyncio.create_task(store.append([model_failed(keep.run_id)], keep))
    dropped = asyncio.create_task(store.append([model_failed(drop.run_id)], drop))
    await asyncio.sleep(0)  # both are queued; the flush has not run yet
    dropped.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert len(await journal(store, keep)) == 2
    assert len(await journal(store, drop)) == 1


async def test_a_cancellation_after_the_commit_reports_the_write_first(
    store: SqliteStore,
) -> None:
    late, other = await claimed_runs(store, 2)
    seen: list[str] = []

    async def append_then_continue() -> None:
        await store.append([model_failed(late.run_id)], late)
        seen.append("append returned")
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 1
        await asyncio.sleep(0)
        seen.append("not reached")

    task = asyncio.create_task(append_then_continue())
    helper = asyncio.create_task(store.append([model_failed(other.run_id)], other))
    await asyncio.sleep(0)  # both queued; the flush is next in the loop
    # Runs after the flush resolved the write, before the task could see it.
    asyncio.get_running_loop().call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    await helper
    assert seen == ["append returned"]
    assert len(await journal(store, late)) == 2


def test_threads_each_with_their_own_loop_share_the_store(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteStore(path, synchronous="NORMAL")
    rounds, runs_per_thread, threads = 5, 10, 4
    errors: list[BaseException] = []
    leases: list[Lease] = []

    async def drive() -> None:
        mine = await claimed_runs(store, runs_per_thread)
        leases.extend(mine)
        for step in range(1, rounds + 1):
            await asyncio.gather(*(store.append([model_failed(x.run_id, step)], x) for x in mine))
        await asyncio.gather(*(store.release(x) for x in mine))

    def thread_main() -> None:
        try:
            asyncio.run(drive())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with traced(store) as statements:
        workers = [threading.Thread(target=thread_main) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    assert not errors, errors
    assert not store._queues  # every loop's queue was flushed and removed
    # Each loop batches its own rounds: far fewer commits than writes.
    writes = threads * (runs_per_thread * (rounds + 2))
    assert commits(statements) < writes / 2

    async def check() -> None:
        for lease in leases:
            events = await store.events(lease.run_id)
            steps = [getattr(e, "step", None) for e in events[1:]]
            assert steps == list(range(1, rounds + 1))
            record = await store.get_run(lease.run_id)
            assert record is not None and record.events == rounds + 1
            assert record.status is RunStatus.PENDING
        await store.close()

    asyncio.run(check())
    assert len(leases) == threads * runs_per_thread
    assert_intact(path)
