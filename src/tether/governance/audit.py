"""An append-only, hash-chained audit log: who did what to which run, and why.

Every entry is one decision of the governance layer (a tool call allowed or denied, an
approval asked for and answered, a budget reserved or refused, a grant added or revoked).
Entries are numbered ``1, 2, 3, ...`` and chained: each entry's ``hash`` is
``sha256(prev_hash + body)``, where ``body`` is the canonical JSON of every field except
the two hashes and ``prev_hash`` is the hash of the entry before it (``""`` for the
first). Editing, deleting or reordering a stored entry breaks the chain at that entry,
which :meth:`AuditLog.verify` reports.

What it does not catch: dropping the newest entries (the chain that is left is still
valid; keep the last hash somewhere else to detect that), or someone who rewrites every
hash after the one they changed. Tool arguments are never stored, only their sha256.

Implementations, chosen by :func:`audit_log`: on a
:class:`~tether.store.SqliteStore` the ``audit`` table of its file (shared by every
process that opens it); on an :class:`~tether.store.InMemoryStore` a list that lives as
long as the store.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TextIO, runtime_checkable

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError
from tether.ids import canonical_json
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = [
    "AuditAction",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "VerifyReport",
    "audit_log",
    "chain_hash",
    "entry_body",
    "hash_arguments",
]

_PAGE = 1000
"""Rows read per query while verifying or exporting, so memory stays bounded."""


class AuditAction(StrEnum):
    """The actions the governance layer records (``AuditEntry.action``)."""

    ALLOW = "allow"
    """A tool call was allowed by policy."""
    DENY = "deny"
    """A tool call was refused by policy."""
    APPROVAL_REQUESTED = "approval_requested"
    """A call waits for a person's approval."""
    APPROVED = "approved"
    """A person approved a waiting call."""
    DENIED = "denied"
    """A person refused a waiting call."""
    EXPIRED = "expired"
    """An approval request lapsed unanswered."""
    BUDGET_RESERVED = "budget_reserved"
    """Money was reserved from a budget before a call."""
    BUDGET_DENIED = "budget_denied"
    """A call was refused because a budget would be exceeded."""
    BUDGET_RAISED = "budget_raised"
    """A person raised a budget's current window."""
    GRANT_ADDED = "grant_added"
    """A permission was granted."""
    GRANT_REVOKED = "grant_revoked"
    """A permission was revoked."""
    PRIVILEGED_CALL = "privileged_call"
    """A call ran with elevated rights (an operator override, for example)."""


class AuditProblem(StrEnum):
    """Why :meth:`AuditLog.verify` found the chain broken."""

    MISSING = "missing"
    """An entry is gone: a gap in ``seq`` (a deleted row)."""
    REORDERED = "reordered"
    """An entry's body names another ``seq`` (rows moved or swapped)."""
    EDITED = "edited"
    """An entry's body, fields or hash were changed: its hash does not check out."""
    UNLINKED = "unlinked"
    """An entry's ``prev_hash`` is not the hash of the entry before it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One recorded decision, as stored."""

    seq: int
    """Position in the log: 1 for the first entry, then contiguous."""
    at: datetime
    """When it was recorded (UTC; the database clock for SQLite stores)."""
    actor: str
    """Who acted: a user id, ``worker:<owner>``, ``system``."""
    action: str
    """What happened; one of :class:`AuditAction` for tether's own entries."""
    run_id: str | None
    step: int | None
    """The run's step, if the decision belongs to one."""
    subject: str | None
    """The tool, budget or grant concerned."""
    args_hash: str | None
    """sha256 (hex) of the canonical JSON of the call's arguments; never the arguments."""
    reason: str | None
    prev_hash: str
    """The previous entry's :attr:`hash` (``""`` for the first entry)."""
    hash: str
    """sha256 (hex) of ``prev_hash + body``; see :func:`entry_body`."""

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-ready values (``at`` in ISO 8601)."""
        return {**_fields(self), "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """The result of :meth:`AuditLog.verify`."""

    ok: bool
    """Whether every entry checked out."""
    checked: int
    """Entries checked before the first break (all of them when ``ok``)."""
    broken_seq: int | None = None
    """The first ``seq`` that is missing or does not check out; ``None`` when ``ok``."""
    problem: AuditProblem | None = None
    detail: str | None = None
    """A sentence for people naming ``broken_seq`` and what is wrong."""


@runtime_checkable
class AuditLog(Protocol):
    """An append-only, hash-chained log of governance decisions."""

    async def record(
        self,
        action: str,
        *,
        actor: str,
        run_id: str | None = None,
        step: int | None = None,
        subject: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> AuditEntry:
        """Append one entry, chained to the last one, and return it.

        Args:
            action: What happened, usually an :class:`AuditAction`.
            actor: Who acted.
            run_id: The run concerned. Default: none.
            step: The run's step. Default: none.
            subject: The tool, budget or grant concerned. Default: none.
            arguments: The call's arguments; only their sha256 is kept
                (:func:`hash_arguments`). Default: none.
            reason: Why, for people. Default: none.
        """
        ...

    async def entries(
        self,
        *,
        since: datetime | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[AuditEntry]:
        """Return entries in ``seq`` order, optionally filtered.

        Args:
            since: Only entries recorded at or after this time. Default: all.
            run_id: Only entries of this run. Default: all.
            limit: At most this many (the oldest that match). Default: no limit.
        """
        ...

    async def verify(self) -> VerifyReport:
        """Check the whole chain and report the first break, if any."""
        ...

    async def export_jsonl(
        self, stream: TextIO, *, since: datetime | None = None, run_id: str | None = None
    ) -> int:
        """Write entries (filtered as :meth:`entries`) as JSON lines; return how many."""
        ...


def audit_log(store: Store, *, clock: Clock | None = None) -> AuditLog:
    """Return the audit log kept in ``store``.

    Args:
        store: A :class:`~tether.store.SqliteStore` (the ``audit`` table of its file) or an
            :class:`~tether.store.InMemoryStore` (one list per store: every call with the
            same store returns the same log).
        clock: Timestamps of an in-memory log. Default: the system clock. SQLite logs
            use the database clock, as the store does.

    Raises:
        ConfigurationError: The store keeps no audit log.
    """
    if isinstance(store, SqliteStore):
        return _SqliteAuditLog(store)
    if isinstance(store, InMemoryStore):
        log = _memory_logs.get(store)
        if log is None:
            log = _memory_logs[store] = _MemoryAuditLog(clock or SystemClock())
        return log
    raise ConfigurationError(f"{type(store).__name__} keeps no audit log")


def hash_arguments(arguments: Mapping[str, Any]) -> str:
    """Return the sha256 hex digest of the canonical JSON of ``arguments``."""
    return hashlib.sha256(canonical_json(dict(arguments)).encode()).hexdigest()


def entry_body(entry: AuditEntry) -> str:
    """Return the canonical JSON that is hashed: every field but the two hashes."""
    return canonical_json(_fields(entry))


def chain_hash(prev_hash: str, body: str) -> str:
    """Return ``sha256(prev_hash + body)`` in hex."""
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "run_id": entry.run_id,
        "step": entry.step,
        "subject": entry.subject,
        "args_hash": entry.args_hash,
        "reason": entry.reason,
    }


@dataclass(frozen=True, slots=True)
class _Row:
    """An entry as stored: its fields, and the body that was hashed."""

    entry: AuditEntry
    body: str


def _chain(seq: int, at: datetime, prev_hash: str, fields: dict[str, Any]) -> _Row:
    """Build the row of a new entry after ``prev_hash``."""
    draft = AuditEntry(seq=seq, at=at, prev_hash=prev_hash, hash="", **fields)
    body = entry_body(draft)
    return _Row(
        AuditEntry(seq=seq, at=at, prev_hash=prev_hash, hash=chain_hash(prev_hash, body), **fields),
        body,
    )


class _Verifier:
    """Checks rows in ``seq`` order, one at a time, and remembers the first break."""

    def __init__(self) -> None:
        self.checked = 0
        self.report: VerifyReport | None = None
        self._prev_hash = ""

    def feed(self, row: _Row) -> bool:
        """Check the next row; return whether the chain still holds."""
        entry = row.entry
        expected = self.checked + 1
        if entry.seq != expected:
            return self._broken(expected, AuditProblem.MISSING, f"seq {expected} is missing")
        try:
            body = json.loads(row.body)
        except ValueError:
            return self._broken(expected, AuditProblem.EDITED, "its body is not JSON")
        if not isinstance(body, dict) or body.get("seq") != entry.seq:
            named = body.get("seq") if isinstance(body, dict) else None
            return self._broken(
                expected, AuditProblem.REORDERED, f"it holds the body of seq {named}"
            )
        if chain_hash(entry.prev_hash, row.body) != entry.hash:
            return self._broken(expected, AuditProblem.EDITED, "its hash does not match its body")
        if entry.prev_hash != self._prev_hash:
            return self._broken(
                expected, AuditProblem.UNLINKED, "its prev_hash is not the previous entry's hash"
            )
        if entry_body(entry) != row.body:
            return self._broken(
                expected, AuditProblem.EDITED, "its fields differ from its hashed body"
            )
        self.checked = expected
        self._prev_hash = entry.hash
        return True

    def finish(self) -> VerifyReport:
        return self.report or VerifyReport(ok=True, checked=self.checked)

    def _broken(self, seq: int, problem: AuditProblem, why: str) -> bool:
        self.report = VerifyReport(
            ok=False,
            checked=self.checked,
            broken_seq=seq,
            problem=problem,
            detail=f"audit chain broken at seq {seq} ({problem.value}): {why}",
        )
        return False


def _verify(rows: Iterable[_Row]) -> VerifyReport:
    verifier = _Verifier()
    for row in rows:
        if not verifier.feed(row):
            break
    return verifier.finish()


def _write_jsonl(stream: TextIO, entries: Iterable[AuditEntry]) -> int:
    count = 0
    for entry in entries:
        stream.write(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def _record_fields(
    action: str,
    actor: str,
    run_id: str | None,
    step: int | None,
    subject: str | None,
    arguments: Mapping[str, Any] | None,
    reason: str | None,
) -> dict[str, Any]:
    if not action:
        raise ValueError("action cannot be empty")
    return {
        "actor": actor,
        "action": str(action),
        "run_id": run_id,
        "step": step,
        "subject": subject,
        "args_hash": None if arguments is None else hash_arguments(arguments),
        "reason": reason,
    }


# One log per in-memory store, dropped with it (the store has no room for one of its own).
_memory_logs: weakref.WeakKeyDictionary[InMemoryStore, _MemoryAuditLog] = (
    weakref.WeakKeyDictionary()
)


class _MemoryAuditLog:
    """The audit log of an :class:`~tether.store.InMemoryStore`: a list."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: list[_Row] = []

    async def record(
        self,
        action: str,
        *,
        actor: str,
        run_id: str | None = None,
        step: int | None = None,
        subject: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> AuditEntry:
        fields = _record_fields(action, actor, run_id, step, subject, arguments, reason)
        with self._lock:
            last = self._rows[-1].entry if self._rows else None
            row = _chain(
                1 if last is None else last.seq + 1,
                self._clock.now().astimezone(UTC),
                "" if last is None else last.hash,
                fields,
            )
            self._rows.append(row)
        return row.entry

    async def entries(
        self,
        *,
        since: datetime | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[AuditEntry]:
        with self._lock:
            rows = list(self._rows)
        found = [
            row.entry
            for row in rows
            if (since is None or row.entry.at >= since)
            and (run_id is None or row.entry.run_id == run_id)
        ]
        return found if limit is None else found[:limit]

    async def verify(self) -> VerifyReport:
        with self._lock:
            rows = list(self._rows)
        return _verify(rows)

    async def export_jsonl(
        self, stream: TextIO, *, since: datetime | None = None, run_id: str | None = None
    ) -> int:
        return _write_jsonl(stream, await self.entries(since=since, run_id=run_id))


_COLUMNS = "seq, at, actor, action, run_id, step, subject, args_hash, reason, body, prev_hash, hash"


def _from_sql(row: Sequence[Any]) -> _Row:
    seq, at, actor, action, run_id, step, subject, args_hash, reason, body, prev, hash_ = row
    entry = AuditEntry(
        seq=seq,
        at=datetime.fromtimestamp(at, UTC),
        actor=actor,
        action=action,
        run_id=run_id,
        step=step,
        subject=subject,
        args_hash=args_hash,
        reason=reason,
        prev_hash=prev,
        hash=hash_,
    )
    return _Row(entry, body)


class _SqliteAuditLog:
    """The audit log in the ``audit`` table of a :class:`~tether.store.SqliteStore`."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(
        self,
        action: str,
        *,
        actor: str,
        run_id: str | None = None,
        step: int | None = None,
        subject: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> AuditEntry:
        fields = _record_fields(action, actor, run_id, step, subject, arguments, reason)

        def append(conn: sqlite3.Connection, now: float) -> AuditEntry:
            # The store's transaction holds the write lock (BEGIN IMMEDIATE), so no other
            # process can append between reading the last entry and inserting after it.
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (1, "") if last is None else (int(last[0]) + 1, str(last[1]))
            # `at` is stored as unix seconds; the entry keeps the datetime read back from
            # that float, so a later read gives the same body.
            row = _chain(seq, datetime.fromtimestamp(now, UTC), prev_hash, fields)
            entry = row.entry
            conn.execute(
                f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    now,
                    entry.actor,
                    entry.action,
                    entry.run_id,
                    entry.step,
                    entry.subject,
                    entry.args_hash,
                    entry.reason,
                    row.body,
                    entry.prev_hash,
                    entry.hash,
                ),
            )
            return entry

        return await self._store.write(append)

    async def entries(
        self,
        *,
        since: datetime | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[AuditEntry]:
        where, params = self._filters(since, run_id)
        sql = f"SELECT {_COLUMNS} FROM audit{where} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_from_sql(row).entry for row in self._store.query(sql, *params)]

    async def verify(self) -> VerifyReport:
        verifier = _Verifier()
        after = 0
        while True:
            page = self._store.query(
                f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", after, _PAGE
            )
            for raw in page:
                if not verifier.feed(_from_sql(raw)):
                    return verifier.finish()
            if len(page) < _PAGE:
                return verifier.finish()
            after = int(page[-1][0])

    async def export_jsonl(
        self, stream: TextIO, *, since: datetime | None = None, run_id: str | None = None
    ) -> int:
        where, params = self._filters(since, run_id)
        count = 0
        after = 0
        while True:
            clause = f"{where} AND seq > ?" if where else " WHERE seq > ?"
            page = self._store.query(
                f"SELECT {_COLUMNS} FROM audit{clause} ORDER BY seq LIMIT ?",
                *params,
                after,
                _PAGE,
            )
            count += _write_jsonl(stream, (_from_sql(raw).entry for raw in page))
            if len(page) < _PAGE:
                return count
            after = int(page[-1][0])

    @staticmethod
    def _filters(since: datetime | None, run_id: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            params.append(since.timestamp())
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
