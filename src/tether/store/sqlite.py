"""The embedded durable :class:`~tether.store.Store`: one SQLite file, zero set-up.

Several processes (workers) may share the file. Every write runs in a ``BEGIN IMMEDIATE``
transaction, so writers queue on SQLite's lock (for up to ``busy_timeout``) and a claim
or an append is atomic across processes. WAL lets readers go on while one process
writes; ``synchronous=FULL`` makes every commit survive a power cut.

Group commit. With ``FULL`` every commit costs an fsync (0.2 to 4 ms on the disks we
measured), far more than the statements in it, so writes from different runs are
committed together. A write (``create_run``, ``claim``, ``renew``, ``release``,
``append``) made while other callbacks are ready in its event loop is queued, and the
first one queued schedules a flush with ``loop.call_soon``: everything the other runs of
that loop queue in the same loop turn is committed in ONE transaction. Each write runs
in its own ``SAVEPOINT``, so one refused by its fence (``LeaseLostError``,
``RunNotFoundError``, ``RunStateError``, ``ValueError``) is rolled back alone and raises
only in its caller. No caller continues before the ``COMMIT`` succeeded, so nobody acts
on events that are not on disk; if the ``COMMIT`` (or the ``BEGIN``) fails, every caller
of the batch gets that error and nothing of the batch was written. A write made while
nothing else is ready in its loop (a lone run) is committed at once, without a savepoint,
as if there were no queue (this needs the ``_ready`` queue of asyncio's own loops; on
other loops every write waits one loop turn). Queues are per event loop; the connection
is guarded by a lock, so threads that each run their own loop (``run_sync`` from a
thread pool) can share the store, each committing its own loop's batches.

Cancellation keeps a write atomic for its caller: a caller cancelled while its write is
queued is dropped from the batch (nothing written, ``CancelledError``); a caller whose
write was committed before the cancellation could reach it gets the write's result, and
the cancellation is delivered at its next ``await``, as if it had come just after.

Time is the database's: "now" is computed by SQLite (``julianday('now')``), so leases
are judged on one clock by every process. Times are stored as unix seconds (``REAL``,
rounded to the millisecond the SQLite clock has) and read back as tz-aware UTC datetimes.

The calls are synchronous on the event loop's thread, on purpose: a transaction takes
tens of microseconds (plus the fsync), there is only one writer at a time anyway, and a
thread hop would cost more than the statements.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from tether.errors import LeaseLostError, RunNotFoundError, RunStateError
from tether.events import Event, RunFinished, RunStarted, status_after
from tether.status import RunStatus
from tether.store.base import CLAIMABLE_BY_ID, Lease, Remembered, RunRecord
from tether.store.codec import decode_event, encode_event
from tether.store.migrations import check_version, migrate

__all__ = ["SqliteStore"]

_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

# The database clock in unix seconds. Rounded to whole milliseconds (all the resolution
# SQLite's clock has) so that a value read back as a datetime and passed in again, as
# ``prune(finished_before=record.finished_at)`` does, is the very same float. Within one
# statement every use of it gives the same value (SQLite fixes 'now' per sqlite3_step).
_NOW_EXPR = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) / 1000.0"
_NOW = f"SELECT {_NOW_EXPR}"

_RUN_COLUMNS = (
    "run_id, agent, agent_ref, user_id, task, status, created_at, updated_at, attempts, "
    "lease_owner, lease_expires_at, finished_at, event_count"
)

# Claim next = the oldest (created_at, then insertion) pending run, or running run whose
# lease lapsed. Pending runs have no lease and running runs always have one (release clears
# it and makes the run pending), so each status gets a query that stays cheap:
#
# - the oldest pending run: the first entry of runs_queue for the status;
# - lapsed running runs: counted on runs_claim (a range on lease_expires_at), up to _FEW + 1.
#   Usually there are a handful, and the oldest is taken from that range. When there are
#   more than _FEW (after a crash, all of them), walking runs_queue in creation order
#   instead skips only the live running runs older than the first lapsed one (the active
#   runs of the workers), not sorting them all.
#
# Both indexes only hold runs with an agent_ref (the only ones claim next takes), and the
# queries return the run key (the rowid), so no row is fetched into Python but the one
# claimed.
_FIRST_FREE = """
SELECT created_at, run_key FROM runs INDEXED BY runs_queue
WHERE status = :status AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    AND agent_ref IS NOT NULL
ORDER BY created_at, run_key
LIMIT 1
"""
_LAPSED_RANGE = """
FROM runs INDEXED BY runs_claim
WHERE status = :status AND lease_expires_at <= :now AND agent_ref IS NOT NULL
"""
_LAPSED_COUNT = f"SELECT count(*) FROM (SELECT 1 {_LAPSED_RANGE} LIMIT :limit)"
_OLDEST_LAPSED = f"SELECT created_at, run_key {_LAPSED_RANGE} ORDER BY created_at, run_key LIMIT 1"
_FEW = 64

_CLAIM = """
UPDATE runs SET
    lease_epoch = lease_epoch + 1,
    attempts = attempts + 1,
    status = CASE status WHEN :pending THEN :running ELSE status END,
    lease_owner = :owner,
    lease_expires_at = :expires,
    updated_at = :now
WHERE run_key = :run_key
RETURNING run_id, lease_epoch, attempts
"""

_RELEASE = """
UPDATE runs SET
    status = CASE status WHEN :running THEN :pending ELSE status END,
    attempts = 0,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE run_id = :run_id AND lease_epoch = :epoch AND lease_owner IS NOT NULL
"""

_CREATE = """
INSERT INTO runs (run_id, agent, agent_ref, user_id, task, status, created_at, updated_at,
    event_count, lease_owner, lease_expires_at, lease_epoch, attempts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (run_id) DO NOTHING
"""
_INSERT_EVENT = "INSERT INTO events (run_key, seq, kind, body) VALUES (?, ?, ?, ?)"

# The fence: the row moves only if the lease's epoch is still the current one and the
# lease was not released. One statement per append: the time comes from _NOW_EXPR (no
# query of its own) and RETURNING gives what the event rows need. Three variants, so that
# an append that moves no status leaves the indexed columns (status, lease_expires_at,
# finished_at) alone and their index entries are not rewritten (about 3 WAL pages less
# per commit); the last one also releases the lease (see _RELEASE), for the final append.
_FENCE = "WHERE run_id = :run_id AND lease_epoch = :epoch AND lease_owner IS NOT NULL"
_APPEND_ONLY = f"""
UPDATE runs SET event_count = event_count + :count, updated_at = {_NOW_EXPR}
{_FENCE}
RETURNING run_key, event_count
"""
_APPEND = f"""
UPDATE runs SET
    event_count = event_count + :count,
    status = coalesce(:status, status),
    updated_at = {_NOW_EXPR},
    finished_at = CASE WHEN :finished THEN {_NOW_EXPR} ELSE finished_at END
{_FENCE}
RETURNING run_key, event_count
"""
_APPEND_RELEASE = f"""
UPDATE runs SET
    event_count = event_count + :count,
    status = CASE coalesce(:status, status) WHEN :running THEN :pending
        ELSE coalesce(:status, status) END,
    updated_at = {_NOW_EXPR},
    finished_at = CASE WHEN :finished THEN {_NOW_EXPR} ELSE finished_at END,
    attempts = 0,
    lease_owner = NULL,
    lease_expires_at = NULL
{_FENCE}
RETURNING run_key, event_count
"""

_EVENTS = """
SELECT kind, body FROM events
WHERE run_key = (SELECT run_key FROM runs WHERE run_id = ?)
ORDER BY seq
"""


class _Txn:
    """The open write transaction writes run in, and the database's now, read on demand."""

    __slots__ = ("_now", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._now: float | None = None

    @property
    def now(self) -> float:
        """The database clock in unix seconds, read at first use, then the same value.

        For writes that need the time as a value (leases, creation); appends compute it
        inside their own statement instead, saving a query.
        """
        if self._now is None:
            (self._now,) = self.conn.execute(_NOW).fetchone()
        return self._now


_Work = Callable[[_Txn], _T]
"""One write: statements run inside a transaction; its return value goes to its caller."""


@dataclasses.dataclass(slots=True)
class _Queued:
    """A write waiting for its loop's flush, and the future its caller awaits."""

    work: Callable[[_Txn], Any]
    future: asyncio.Future[Any]


class SqliteStore:
    """Runs and journals in a SQLite file, shared safely by several processes.

    Opening creates the file and its parent directories if needed and migrates the
    schema (see :mod:`tether.store.migrations`). Concurrent writes of one event loop are
    committed together (group commit, see the module documentation).

    Args:
        path: The database file, for example ``.tether/tether.db``.
        busy_timeout: How long a write waits for another process's transaction before
            failing with ``sqlite3.OperationalError`` ("database is locked"). Default 5 s.
        synchronous: ``"FULL"`` (default) fsyncs every commit, so an acknowledged event
            survives a power cut; ``"NORMAL"`` is faster and still never corrupts the
            file, but may lose the last commits on power loss (not on a process crash).

    Raises:
        SchemaVersionError: The file was written by a newer tether (it was not touched).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: timedelta = timedelta(seconds=5),
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if busy_timeout < timedelta(0):
            raise ValueError("busy_timeout cannot be negative")
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Writes waiting for their loop's flush. Each loop only touches its own entry,
        # from its own thread.
        self._queues: dict[asyncio.AbstractEventLoop, list[_Queued]] = {}
        self._conn = _connect(self._path, busy_timeout=busy_timeout, synchronous=synchronous)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def create_run(
        self,
        started: RunStarted,
        *,
        owner: str | None = None,
        lease_for: timedelta | None = None,
    ) -> Lease | None:
        """Accept a run: its row and first event in one transaction; see the protocol.

        With ``owner`` the run is created claimed by it (see :meth:`Store.create_run`).

        Raises:
            RunStateError: A run with this id exists.
        """
        body = encode_event(started)
        seconds = None if owner is None else (lease_for or timedelta(0)).total_seconds()
        expires = await self._transact(lambda txn: _create(txn, started, body, owner, seconds))
        if owner is None or expires is None:
            return None
        return Lease(
            run_id=started.run_id,
            owner=owner,
            epoch=1,
            attempts=1,
            expires_at=_to_datetime(expires),
        )

    async def claim(
        self, owner: str, *, lease_for: timedelta, run_id: str | None = None, force: bool = False
    ) -> Lease | None:
        """Claim a run; see :meth:`Store.claim`. The lease runs on the database clock."""
        seconds = lease_for.total_seconds()
        return await self._transact(lambda txn: _claim(txn, owner, seconds, run_id, force))

    async def renew(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """Extend a lease; see :meth:`Store.renew`.

        Raises:
            LeaseLostError: The lease's epoch is no longer current.
            RunNotFoundError: The run no longer exists.
        """
        seconds = lease_for.total_seconds()
        expires = await self._transact(lambda txn: _renew(txn, lease, seconds))
        return dataclasses.replace(lease, expires_at=_to_datetime(expires))

    async def release(self, lease: Lease) -> None:
        """Give a run up cleanly; see :meth:`Store.release`. A lost lease is ignored."""
        await self._transact(lambda txn: _release(txn, lease))

    async def append(self, events: Sequence[Event], lease: Lease, *, release: bool = False) -> None:
        """Append ``events`` if the lease is current; see :meth:`Store.append`.

        Raises:
            LeaseLostError: ``lease.epoch`` is no longer current; nothing was written.
            RunNotFoundError: The run does not exist.
            ValueError: An event belongs to another run.
        """
        if any(e.run_id != lease.run_id for e in events):
            raise ValueError("every event must belong to the lease's run")
        status: RunStatus | None = None
        for event in events:
            moved_to = status_after(event)
            if moved_to is not None:
                status = moved_to
        finished = any(isinstance(e, RunFinished) for e in events)
        params: dict[str, Any] = {
            "count": len(events),
            "status": None if status is None else status.value,
            "finished": finished,
            "run_id": lease.run_id,
            "epoch": lease.epoch,
        }
        if release:
            sql = _APPEND_RELEASE
            params.update(_STATUSES)
        else:
            sql = _APPEND if status is not None or finished else _APPEND_ONLY
        rows = [(e.kind, encode_event(e)) for e in events]
        await self._transact(lambda txn: _append(txn, lease, sql, params, rows))

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id`` in order (empty if the run is unknown)."""
        rows = self._read(_EVENTS, run_id)
        return [decode_event(run_id, kind, body) for kind, body in rows]

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the row of ``run_id``, or ``None``."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", run_id)
        return _record(rows[0]) if rows else None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int | None = None,
    ) -> Sequence[RunRecord]:
        """Return runs, newest first (creation time), optionally filtered.

        Args:
            status: Only runs in this status. Default: any.
            agent: Only runs of the agent with this name. Default: any.
            limit: At most this many runs. Default: all.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(-1 if limit is None else limit)  # LIMIT -1: no limit
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
            *params,
        )
        return [_record(row) for row in rows]

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete runs finished before ``finished_before`` (tz-aware) and their journals.

        Returns:
            How many runs were deleted.
        """
        before = _to_seconds(finished_before)
        return await self._transact(lambda txn: _prune(txn, before))

    async def remember(
        self, namespace: str, key: str, value: str, *, ttl: timedelta, source: str | None = None
    ) -> None:
        """Keep ``value`` for ``ttl`` (database clock); see :meth:`Store.remember`."""
        seconds = ttl.total_seconds()
        await self._transact(lambda txn: _remember(txn, namespace, key, value, source, seconds))

    async def recall(self, namespace: str, key: str) -> Remembered | None:
        """Return the live value under ``(namespace, key)``; see :meth:`Store.recall`."""
        rows = self._read(
            f"SELECT value, source, expires_at FROM remembered "
            f"WHERE namespace = ? AND key = ? AND expires_at > {_NOW_EXPR}",
            namespace,
            key,
        )
        if not rows:
            return None
        value, source, expires = rows[0]
        return Remembered(value=value, source=source, expires_at=_to_datetime(expires))

    async def write(self, work: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run ``work(connection, now)`` in a committed write transaction; return its value.

        For modules that keep their own tables in this file (the audit log, budgets):
        ``now`` is the database clock in unix seconds. The write joins the group commit of
        its loop turn, in a savepoint of its own: if it raises, it is undone alone.
        """
        return await self._transact(lambda txn: work(txn.conn, txn.now))

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Run a read-only statement on the store's connection and return all rows."""
        return self._read(sql, *params)

    async def close(self) -> None:
        """Close the connection. The store is unusable afterwards; closing twice is fine."""
        with self._lock:
            self._conn.close()

    async def _transact(self, work: _Work[_T]) -> _T:
        """Run ``work`` in a committed write transaction, with others of this loop turn.

        Returns once the transaction that holds the write committed.

        Raises:
            Exception: What ``work`` raised (the write was rolled back), or why the
                transaction could not begin or commit (nothing of it was written).
        """
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            if _alone(loop):
                # Nothing else can queue before a flush would run: commit now.
                return cast(_T, self._commit([work])[0][0])
            queue = self._queues[loop] = []
            loop.call_soon(self._flush, loop)
        future: asyncio.Future[_T] = loop.create_future()
        queue.append(_Queued(work, future))
        return await _settled(future)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the writes ``loop`` queued in one transaction, then wake their callers."""
        queued = [item for item in self._queues.pop(loop) if not item.future.cancelled()]
        if not queued:
            return
        try:
            outcomes = self._commit([item.work for item in queued])
        except Exception as exc:  # BEGIN, COMMIT or a lone write failed: nothing written
            for item in queued:
                item.future.set_exception(exc)
            return
        except BaseException:  # KeyboardInterrupt: rolled back; the callers are cancelled
            for item in queued:
                item.future.cancel()
            raise
        for item, (value, error) in zip(queued, outcomes, strict=True):
            if error is None:
                item.future.set_result(value)
            else:
                item.future.set_exception(error)

    def _commit(self, works: Sequence[_Work[Any]]) -> list[tuple[Any, Exception | None]]:
        """Run ``works`` in order in ONE transaction and commit it.

        A lone write runs bare (its error rolls the transaction back and is raised);
        several each run in a savepoint, so a write that raises is undone alone.

        Returns:
            Per write: its value and ``None``, or ``None`` and the exception it raised.
        """
        with self._lock:
            conn = self._conn
            # IMMEDIATE takes the write lock now, so what we read is still true at commit.
            conn.execute("BEGIN IMMEDIATE")
            try:
                txn = _Txn(conn)
                if len(works) == 1:
                    outcomes: list[tuple[Any, Exception | None]] = [(works[0](txn), None)]
                else:
                    outcomes = [_attempt(txn, work) for work in works]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return outcomes

    def _read(self, sql: str, *params: Any) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()


def _alone(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether no callback is ready in ``loop``: no other run can write this loop turn.

    Reads the ready queue of asyncio's own loops; any other loop counts as busy.
    """
    ready = getattr(loop, "_ready", None)
    return isinstance(ready, collections.deque) and not ready


async def _settled(future: asyncio.Future[_T]) -> _T:
    """Wait for a queued write, keeping it atomic for its caller under cancellation."""
    try:
        return await future
    except asyncio.CancelledError as exc:
        if future.cancelled():
            raise  # dropped from the batch before the flush: nothing was written
        # Committed (or refused) before the cancellation reached us: report the write,
        # and deliver the cancellation at the next await, as if it came just after.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
            task.cancel(exc.args[0] if exc.args else None)
        return future.result()


def _attempt(txn: _Txn, work: _Work[Any]) -> tuple[Any, Exception | None]:
    """Run one write of a batch in a savepoint; undo it alone if it raises."""
    conn = txn.conn
    conn.execute("SAVEPOINT tether_write")
    try:
        value = work(txn)
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back: the batch fails
        conn.execute("ROLLBACK TO tether_write")
        conn.execute("RELEASE tether_write")
        return None, exc
    conn.execute("RELEASE tether_write")
    return value, None


def _create(
    txn: _Txn, started: RunStarted, body: str, owner: str | None, lease_seconds: float | None
) -> float | None:
    """Insert a run's row and first event; return its lease's expiry when claimed."""
    now = txn.now
    claimed = owner is not None
    expires = None if lease_seconds is None else now + lease_seconds
    # Not RETURNING: on an INSERT it costs about 14 µs more than reading lastrowid.
    inserted = txn.conn.execute(
        _CREATE,
        (
            started.run_id,
            started.agent,
            started.agent_ref,
            started.user,
            started.task,
            (RunStatus.RUNNING if claimed else RunStatus.PENDING).value,
            now,
            now,
            owner,
            expires,
            int(claimed),
            int(claimed),
        ),
    )
    if inserted.rowcount == 0:
        raise RunStateError(f"run {started.run_id} already exists")
    txn.conn.execute(_INSERT_EVENT, (inserted.lastrowid, 1, started.kind, body))
    return expires


def _claim(
    txn: _Txn, owner: str, lease_seconds: float, run_id: str | None, force: bool
) -> Lease | None:
    """Claim the next claimable run, or ``run_id``; see :meth:`Store.claim`."""
    conn, now = txn.conn, txn.now
    if run_id is None:
        target = _next_claimable(conn, now)
        if target is None:
            return None
    else:
        row = conn.execute(
            "SELECT run_key, status, lease_expires_at, finished_at FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run {run_id}")
        target, status, lease_expires_at, finished_at = row
        if finished_at is not None:
            return None
        if not force and not _claimable_by_id(RunStatus(status), lease_expires_at, now):
            return None
    expires = now + lease_seconds
    claimed, epoch, attempts = conn.execute(
        _CLAIM, {**_STATUSES, "owner": owner, "expires": expires, "now": now, "run_key": target}
    ).fetchone()
    return Lease(
        run_id=claimed,
        owner=owner,
        epoch=epoch,
        attempts=attempts,
        expires_at=_to_datetime(expires),
    )


def _renew(txn: _Txn, lease: Lease, lease_seconds: float) -> float:
    """Move a live lease's expiry; return the new one (unix seconds)."""
    expires = txn.now + lease_seconds
    updated = txn.conn.execute(
        "UPDATE runs SET lease_expires_at = ? "
        "WHERE run_id = ? AND lease_epoch = ? AND lease_owner IS NOT NULL",
        (expires, lease.run_id, lease.epoch),
    )
    if updated.rowcount == 0:
        _raise_fenced(txn.conn, lease)
    return expires


def _release(txn: _Txn, lease: Lease) -> None:
    txn.conn.execute(
        _RELEASE, {**_STATUSES, "now": txn.now, "run_id": lease.run_id, "epoch": lease.epoch}
    )


def _append(
    txn: _Txn, lease: Lease, sql: str, params: dict[str, Any], rows: Sequence[tuple[str, str]]
) -> None:
    """Move the run's row behind the fence, then insert the event rows after its last."""
    returned = txn.conn.execute(sql, params).fetchone()
    if returned is None:
        _raise_fenced(txn.conn, lease)
    run_key, count = returned
    first = count - len(rows) + 1
    txn.conn.executemany(
        _INSERT_EVENT, [(run_key, first + i, kind, body) for i, (kind, body) in enumerate(rows)]
    )


def _prune(txn: _Txn, before: float) -> int:
    deleted = txn.conn.execute(
        "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)
    )
    txn.conn.execute("DELETE FROM remembered WHERE expires_at <= ?", (txn.now,))
    return deleted.rowcount


def _remember(
    txn: _Txn, namespace: str, key: str, value: str, source: str | None, seconds: float
) -> None:
    txn.conn.execute(
        "INSERT OR REPLACE INTO remembered (namespace, key, value, source, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (namespace, key, value, source, txn.now + seconds),
    )


_STATUSES = {"pending": RunStatus.PENDING.value, "running": RunStatus.RUNNING.value}


def _connect(
    path: Path, *, busy_timeout: timedelta, synchronous: Literal["FULL", "NORMAL"]
) -> sqlite3.Connection:
    seconds = busy_timeout.total_seconds()
    # Autocommit mode: tether issues BEGIN IMMEDIATE / COMMIT itself. One loop uses the
    # connection at a time (the store's lock), whatever thread that loop runs in.
    conn = sqlite3.connect(path, timeout=seconds, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")  # events cascade with their run
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Before anything that writes, WAL included: a newer file must stay untouched.
        check_version(conn, name=str(path))
        _use_wal(conn, patience=seconds)
        migrate(conn, name=str(path))
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, *, patience: float) -> None:
    """Switch the file to WAL, waiting up to ``patience`` seconds for other openers.

    Switching needs the file to itself, and SQLite does not run the busy handler for it:
    two processes opening a new file at once would see "database is locked".
    """
    waited, pause = 0.0, 0.005
    pausing = threading.Event()
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or waited >= patience:
                raise
        pausing.wait(pause)  # never set: a plain sleep that needs no clock
        waited += pause
        pause = min(pause * 2, 0.1)


def _next_claimable(conn: sqlite3.Connection, now: float) -> int | None:
    """The run key of the run claim next takes, or ``None`` (see _FIRST_FREE)."""
    pending = {"status": RunStatus.PENDING.value, "now": now}
    running = {"status": RunStatus.RUNNING.value, "now": now}
    candidates = conn.execute(_FIRST_FREE, pending).fetchall()
    (lapsed,) = conn.execute(_LAPSED_COUNT, {**running, "limit": _FEW + 1}).fetchone()
    if lapsed > _FEW:
        candidates += conn.execute(_FIRST_FREE, running).fetchall()
    elif lapsed:
        candidates += conn.execute(_OLDEST_LAPSED, running).fetchall()
    if not candidates:
        return None
    run_key: int = min(candidates)[1]  # (created_at, run_key): oldest, then first inserted
    return run_key


def _raise_fenced(conn: sqlite3.Connection, lease: Lease) -> None:
    row = conn.execute("SELECT lease_epoch FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"no run {lease.run_id}")
    if row[0] != lease.epoch:
        raise LeaseLostError(
            f"run {lease.run_id} is owned by a newer lease (epoch {row[0]} > {lease.epoch})"
        )
    raise LeaseLostError(f"run {lease.run_id}: lease epoch {lease.epoch} was released")


def _claimable_by_id(status: RunStatus, expires: float | None, now: float) -> bool:
    return status in CLAIMABLE_BY_ID and (expires is None or expires <= now)


def _record(row: tuple[Any, ...]) -> RunRecord:
    (run_id, agent, agent_ref, user, task, status, created, updated, attempts) = row[:9]
    owner, expires, finished, events = row[9:]
    return RunRecord(
        run_id=run_id,
        agent=agent,
        agent_ref=agent_ref,
        user=user,
        task=task,
        status=RunStatus(status),
        created_at=_to_datetime(created),
        updated_at=_to_datetime(updated),
        attempts=attempts,
        lease_owner=owner,
        lease_expires_at=None if expires is None else _to_datetime(expires),
        finished_at=None if finished is None else _to_datetime(finished),
        events=events,
    )


def _to_datetime(seconds: float) -> datetime:
    return _EPOCH + timedelta(microseconds=round(seconds * 1_000_000))


def _to_seconds(moment: datetime) -> float:
    # Exact integer arithmetic, so a stored millisecond value round-trips to the same float.
    return (moment - _EPOCH) / _SECOND
