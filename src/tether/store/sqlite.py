"""The embedded durable :class:`~tether.store.Store`: one SQLite file, zero set-up.

Several processes (workers) may share the file. Every write is one ``BEGIN IMMEDIATE``
transaction, so writers queue on SQLite's lock (for up to ``busy_timeout``) and a claim
or an append is atomic across processes. WAL lets readers go on while one process
writes; ``synchronous=FULL`` makes every commit survive a power cut.

Time is the database's: "now" is computed by SQLite (``julianday('now')``), so leases
are judged on one clock by every process. Times are stored as unix seconds (``REAL``,
rounded to the millisecond the SQLite clock has) and read back as tz-aware UTC datetimes.

The calls are synchronous inside the ``async`` methods, on purpose: a transaction takes
tens of microseconds (plus the fsync), there is only one writer at a time anyway, and a
thread hop would cost more than the query. A lock makes the store safe to share between
threads that each run their own event loop (``run_sync`` from a thread pool).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from tether.errors import LeaseLostError, RunNotFoundError, RunStateError
from tether.events import Event, RunFinished, RunStarted, status_after
from tether.status import RunStatus
from tether.store.base import CLAIMABLE_BY_ID, Lease, RunRecord
from tether.store.codec import decode_event, encode_event
from tether.store.migrations import check_version, migrate

__all__ = ["SqliteStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

# The database clock in unix seconds. Rounded to whole milliseconds (all the resolution
# SQLite's clock has) so that a value read back as a datetime and passed in again, as
# ``prune(finished_before=record.finished_at)`` does, is the very same float.
_NOW = "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) / 1000.0"

_RUN_COLUMNS = (
    "run_id, agent, agent_ref, user_id, task, status, created_at, updated_at, attempts, "
    "lease_owner, lease_expires_at, finished_at, event_count"
)

# Claim next = the oldest (created_at, then insertion) pending run, or running run whose
# lease lapsed. Pending runs have no lease and running runs always have one (release clears
# it and makes the run pending), so each status gets a query that stays cheap:
#
# - the oldest pending run: the first entry of runs_queue for the status;
# - lapsed running runs: a range of runs_claim on lease_expires_at, usually a handful (the
#   oldest is picked in Python). When there are more than _FEW (after a crash, all of
#   them), walking runs_queue in creation order instead skips only the live running runs
#   older than the first lapsed one (the active runs of the workers), not sorting them all.
_FIRST_FREE = """
SELECT run_id, created_at, rowid FROM runs INDEXED BY runs_queue
WHERE status = :status AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    AND agent_ref IS NOT NULL
ORDER BY created_at, rowid
LIMIT 1
"""
_LAPSED = """
SELECT run_id, created_at, rowid FROM runs INDEXED BY runs_claim
WHERE status = :status AND lease_expires_at <= :now AND agent_ref IS NOT NULL
LIMIT :limit
"""
_FEW = 64

_CLAIM = """
UPDATE runs SET
    lease_epoch = lease_epoch + 1,
    attempts = attempts + 1,
    status = CASE status WHEN :pending THEN :running ELSE status END,
    lease_owner = :owner,
    lease_expires_at = :expires,
    updated_at = :now
WHERE run_id = :run_id
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

# The fence: the row moves only if the lease's epoch is still the current one and the
# lease was not released.
_APPEND = """
UPDATE runs SET
    event_count = event_count + :count,
    status = coalesce(:status, status),
    updated_at = :now,
    finished_at = CASE WHEN :finished THEN :now ELSE finished_at END
WHERE run_id = :run_id AND lease_epoch = :epoch AND lease_owner IS NOT NULL
RETURNING event_count
"""
_APPEND_ONLY = """
UPDATE runs SET event_count = event_count + :count, updated_at = :now
WHERE run_id = :run_id AND lease_epoch = :epoch AND lease_owner IS NOT NULL
RETURNING event_count
"""


class SqliteStore:
    """Runs and journals in a SQLite file, shared safely by several processes.

    Opening creates the file and its parent directories if needed and migrates the
    schema (see :mod:`tether.store.migrations`).

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
        """
        body = encode_event(started)
        claimed = owner is not None
        with self._write() as (conn, now):
            exists = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (started.run_id,))
            if exists.fetchone() is not None:
                raise RunStateError(f"run {started.run_id} already exists")
            expires = now + (lease_for or timedelta(0)).total_seconds() if claimed else None
            conn.execute(
                "INSERT INTO runs (run_id, agent, agent_ref, user_id, task, status,"
                " created_at, updated_at, event_count, lease_owner, lease_expires_at,"
                " lease_epoch, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
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
            conn.execute(
                "INSERT INTO events (run_id, seq, kind, body) VALUES (?, 1, ?, ?)",
                (started.run_id, started.kind, body),
            )
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
        with self._write() as (conn, now):
            if run_id is None:
                target = _next_claimable(conn, now)
                if target is None:
                    return None
            else:
                row = conn.execute(
                    "SELECT status, lease_expires_at, finished_at FROM runs WHERE run_id = ?",
                    (run_id,),
                ).fetchone()
                if row is None:
                    raise RunNotFoundError(f"no run {run_id}")
                if row[2] is not None:
                    return None
                if not force and not _claimable_by_id(RunStatus(row[0]), row[1], now):
                    return None
                target = run_id
            expires = now + lease_for.total_seconds()
            conn.execute(
                _CLAIM,
                {**_STATUSES, "owner": owner, "expires": expires, "now": now, "run_id": target},
            )
            epoch, attempts = conn.execute(
                "SELECT lease_epoch, attempts FROM runs WHERE run_id = ?", (target,)
            ).fetchone()
        return Lease(
            run_id=target,
            owner=owner,
            epoch=epoch,
            attempts=attempts,
            expires_at=_to_datetime(expires),
        )

    async def renew(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """Extend a lease; see :meth:`Store.renew`.

        Raises:
            LeaseLostError: The lease's epoch is no longer current.
            RunNotFoundError: The run no longer exists.
        """
        with self._write() as (conn, now):
            expires = now + lease_for.total_seconds()
            updated = conn.execute(
                "UPDATE runs SET lease_expires_at = ? "
                "WHERE run_id = ? AND lease_epoch = ? AND lease_owner IS NOT NULL",
                (expires, lease.run_id, lease.epoch),
            )
            if updated.rowcount == 0:
                _raise_fenced(conn, lease)
        return dataclasses.replace(lease, expires_at=_to_datetime(expires))

    async def release(self, lease: Lease) -> None:
        """Give a run up cleanly; see :meth:`Store.release`. A lost lease is ignored."""
        with self._write() as (conn, now):
            conn.execute(
                _RELEASE, {**_STATUSES, "now": now, "run_id": lease.run_id, "epoch": lease.epoch}
            )

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
        rows = [(e.kind, encode_event(e)) for e in events]
        moves = status is not None or finished
        with self._write() as (conn, now):
            # Without a status move, leave the indexed columns alone so their index
            # entries are not rewritten (about 3 WAL pages less per commit).
            updated = conn.execute(
                _APPEND if moves else _APPEND_ONLY,
                {
                    "count": len(rows),
                    "status": None if status is None else status.value,
                    "finished": finished,
                    "now": now,
                    "run_id": lease.run_id,
                    "epoch": lease.epoch,
                },
            )
            returned = updated.fetchone()
            if returned is None:
                _raise_fenced(conn, lease)
            first = returned[0] - len(rows) + 1
            conn.executemany(
                "INSERT INTO events (run_id, seq, kind, body) VALUES (?, ?, ?, ?)",
                [(lease.run_id, first + i, kind, body) for i, (kind, body) in enumerate(rows)],
            )
            if release:
                conn.execute(
                    _RELEASE,
                    {**_STATUSES, "now": now, "run_id": lease.run_id, "epoch": lease.epoch},
                )

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id`` in order (empty if the run is unknown)."""
        rows = self._read("SELECT kind, body FROM events WHERE run_id = ? ORDER BY seq", run_id)
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
        with self._write() as (conn, _):
            deleted = conn.execute(
                "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)
            )
            return deleted.rowcount

    async def close(self) -> None:
        """Close the connection. The store is unusable afterwards; closing twice is fine."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """One write transaction; yields the connection and the database's now."""
        with self._lock:
            conn = self._conn
            # IMMEDIATE takes the write lock now, so what we read is still true at commit.
            conn.execute("BEGIN IMMEDIATE")
            try:
                (now,) = conn.execute(_NOW).fetchone()
                yield conn, now
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, *params: Any) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()


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
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn, name=str(path))
    except BaseException:
        conn.close()
        raise
    return conn


def _next_claimable(conn: sqlite3.Connection, now: float) -> str | None:
    pending = {"status": RunStatus.PENDING.value, "now": now}
    running = {"status": RunStatus.RUNNING.value, "now": now}
    candidates = conn.execute(_FIRST_FREE, pending).fetchall()
    lapsed = conn.execute(_LAPSED, {**running, "limit": _FEW + 1}).fetchall()
    if len(lapsed) > _FEW:
        lapsed = conn.execute(_FIRST_FREE, running).fetchall()
    candidates += lapsed
    if not candidates:
        return None
    run_id: str = min(candidates, key=lambda row: (row[1], row[2]))[0]
    return run_id


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
