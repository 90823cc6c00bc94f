"""Tool permissions: deny by default, inherited from a user's roles, bounded by arguments.

A :class:`Grant` lets a *principal* (``user:<id>`` or ``role:<name>``) call one tool (or
every tool, ``*``), optionally only while the call's numeric arguments stay at or below
ceilings (``{"amount": 100}``) and only until it expires. A user holds the grants of
``user:<id>`` and of every role given to them with :meth:`Permissions.set_roles`.
Revoked and expired grants count for nothing.

:meth:`Permissions.check` answers one call with a :class:`Decision` and writes exactly one
``allow`` or ``deny`` entry to the store's audit log (:func:`~tether.governance.audit.audit_log`;
the arguments only as a hash). A call without a user is denied.

Grants come only from this API and the ``tether grants`` command: nothing a model or a
tool writes is ever read as a grant.

Implementations, chosen by :func:`permissions`: on a :class:`~tether.store.SqliteStore`
the ``principals`` and ``grants`` tables (schema 7) of its file, judged on the database
clock; on an :class:`~tether.store.InMemoryStore` dicts that live as long as the store,
judged on its clock.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from tether.clock import Clock
from tether.errors import ConfigurationError
from tether.governance.audit import AuditAction, AuditLog, audit_log
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = [
    "ANY_TOOL",
    "Decision",
    "Grant",
    "Permissions",
    "permissions",
]

ANY_TOOL = "*"
"""The tool name of a grant that covers every tool."""

_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_ANONYMOUS = "anonymous"
"""The audit actor of a check without a user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Permission for a principal to call a tool, within argument ceilings, until it expires."""

    grant_id: str
    principal: str
    """``user:<id>`` or ``role:<name>``."""
    tool: str
    """A tool name, or ``*`` for every tool."""
    max_args: Mapping[str, float] | None = None
    """Ceilings of numeric arguments: the call's argument must be a number ``<=`` its
    ceiling (a missing or non-numeric argument is a denial). ``None``: no ceilings."""
    expires_at: datetime | None = None
    """When the grant stops counting (UTC). ``None``: never."""
    created_at: datetime
    revoked_at: datetime | None = None

    def covers(self, tool_name: str) -> bool:
        """Whether the grant is about ``tool_name`` (ceilings aside)."""
        return self.tool in (ANY_TOOL, tool_name)

    def to_dict(self) -> dict[str, Any]:
        """Return the grant as JSON-ready values (times in ISO 8601)."""
        return {
            "grant_id": self.grant_id,
            "principal": self.principal,
            "tool": self.tool,
            "max_args": None if self.max_args is None else dict(self.max_args),
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The answer to one :meth:`Permissions.check`."""

    allowed: bool
    reason: str
    """Why, for people and for the model (a denial's reason is sent to it)."""
    grant_id: str | None = None
    """The grant that allowed the call; ``None`` for a denial."""


@runtime_checkable
class Permissions(Protocol):
    """Who may call which tool, with which arguments (deny by default)."""

    async def set_roles(self, user: str, roles: Sequence[str]) -> None:
        """Replace ``user``'s roles (an empty sequence removes them all)."""
        ...

    async def roles(self, user: str) -> tuple[str, ...]:
        """Return ``user``'s roles, sorted (empty for an unknown user)."""
        ...

    async def grant(
        self,
        principal: str,
        tool: str,
        *,
        max_args: Mapping[str, float] | None = None,
        expires_at: datetime | None = None,
        actor: str = "system",
    ) -> Grant:
        """Add a grant and record ``grant_added`` in the audit log.

        Args:
            principal: ``user:<id>`` or ``role:<name>``.
            tool: A tool name, or ``*`` for every tool.
            max_args: Ceilings of numeric arguments, such as ``{"amount": 100}``.
                Default: none.
            expires_at: When the grant stops counting (timezone-aware). Default: never.
            actor: Who grants it, for the audit log. Default ``system``.

        Raises:
            ConfigurationError: A malformed principal, empty tool, non-numeric ceiling or
                naive ``expires_at``.
        """
        ...

    async def revoke(self, grant_id: str, *, actor: str = "system") -> bool:
        """Revoke a grant; return whether it was in force (unknown or revoked: ``False``)."""
        ...

    async def grants_for(self, user: str) -> list[Grant]:
        """Return the grants in force for ``user``: their own and their roles'."""
        ...

    async def grants(self) -> list[Grant]:
        """Return every grant in force (not revoked, not expired), oldest first."""
        ...

    async def check(
        self,
        user: str | None,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        run_id: str | None = None,
        step: int | None = None,
    ) -> Decision:
        """Decide one call and record it (``allow`` or ``deny``) in the audit log.

        Args:
            user: The run's user; ``None`` is always denied.
            tool_name: The tool called.
            arguments: The call's validated arguments (audited only as a hash).
            run_id: The run, for the audit entry. Default: none.
            step: The run's step, for the audit entry. Default: none.
        """
        ...


def permissions(store: Store, *, clock: Clock | None = None) -> Permissions:
    """Return the permissions kept in ``store``.

    Args:
        store: A :class:`~tether.store.SqliteStore` (its ``principals`` and ``grants``
            tables) or an :class:`~tether.store.InMemoryStore` (one set per store: every
            call with the same store shares it).
        clock: The clock expiry is judged on for an in-memory store. Default: the store's.
            SQLite stores use the database clock.

    Raises:
        ConfigurationError: The store keeps no permissions.
    """
    if isinstance(store, SqliteStore):
        return _SqlitePermissions(store)
    if isinstance(store, InMemoryStore):
        found = _memory.get(store)
        if found is None:
            found = _memory[store] = _MemoryPermissions(store, clock or store._clock)
        return found
    raise ConfigurationError(f"{type(store).__name__} keeps no permissions")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked_grant(
    principal: str, tool: str, max_args: Mapping[str, float] | None, expires_at: datetime | None
) -> dict[str, float] | None:
    kind, _, name = principal.partition(":")
    if kind not in ("user", "role") or not name:
        raise ConfigurationError(f"a principal is 'user:<id>' or 'role:<name>', not {principal!r}")
    if not tool:
        raise ConfigurationError("a grant needs a tool name, or '*' for every tool")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ConfigurationError("expires_at must be timezone-aware")
    if max_args is None:
        return None
    ceilings: dict[str, float] = {}
    for argument, ceiling in max_args.items():
        if not argument or not _is_number(ceiling) or not math.isfinite(ceiling):
            raise ConfigurationError(
                f"the ceiling of {argument!r} must be a finite number, not {ceiling!r}"
            )
        ceilings[argument] = ceiling
    return ceilings


def _principals(user: str, roles: Iterable[str]) -> list[str]:
    return [f"user:{user}", *(f"role:{role}" for role in roles)]


def _judge(tool_name: str, arguments: Mapping[str, Any], grants: Sequence[Grant]) -> Decision:
    """The decision for one call, given the grants in force for its user."""
    refusal: str | None = None
    for grant in grants:
        if not grant.covers(tool_name):
            continue
        problem = _over_ceiling(grant, arguments)
        if problem is None:
            return Decision(
                allowed=True,
                reason=f"allowed by grant {grant.grant_id} ({grant.principal})",
                grant_id=grant.grant_id,
            )
        refusal = refusal or problem
    return Decision(allowed=False, reason=refusal or f"no grant allows tool {tool_name!r}")


def _over_ceiling(grant: Grant, arguments: Mapping[str, Any]) -> str | None:
    for argument, ceiling in sorted((grant.max_args or {}).items()):
        value = arguments.get(argument)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"argument {argument!r} must be a number at most {ceiling:g}"
        if not value <= ceiling:
            return f"argument {argument!r} is {value:g}, over the granted ceiling {ceiling:g}"
    return None


async def _audited(
    log: AuditLog,
    user: str | None,
    tool_name: str,
    arguments: Mapping[str, Any],
    decision: Decision,
    run_id: str | None,
    step: int | None,
) -> Decision:
    await log.record(
        AuditAction.ALLOW if decision.allowed else AuditAction.DENY,
        actor=user or _ANONYMOUS,
        run_id=run_id,
        step=step,
        subject=tool_name,
        arguments=arguments,
        reason=decision.reason,
    )
    return decision


_NO_USER = Decision(allowed=False, reason="the run has no user, so no grant can apply")


# One set of permissions per in-memory store, dropped with it.
_memory: weakref.WeakKeyDictionary[InMemoryStore, _MemoryPermissions] = weakref.WeakKeyDictionary()


class _MemoryPermissions:
    """Permissions of an :class:`~tether.store.InMemoryStore`: dicts, on a clock."""

    def __init__(self, store: InMemoryStore, clock: Clock) -> None:
        self._clock = clock
        self._audit = audit_log(store, clock=clock)
        self._lock = threading.Lock()
        self._roles: dict[str, tuple[str, ...]] = {}
        self._grants: dict[str, Grant] = {}

    def _in_force(self, grant: Grant, now: datetime) -> bool:
        return grant.revoked_at is None and (grant.expires_at is None or grant.expires_at > now)

    def _active(self, principals: Iterable[str] | None) -> list[Grant]:
        now = self._clock.now()
        wanted = None if principals is None else set(principals)
        with self._lock:
            grants = list(self._grants.values())
        return [
            g
            for g in grants
            if self._in_force(g, now) and (wanted is None or g.principal in wanted)
        ]

    async def set_roles(self, user: str, roles: Sequence[str]) -> None:
        with self._lock:
            self._roles[user] = tuple(sorted(set(roles)))

    async def roles(self, user: str) -> tuple[str, ...]:
        with self._lock:
            return self._roles.get(user, ())

    async def grant(
        self,
        principal: str,
        tool: str,
        *,
        max_args: Mapping[str, float] | None = None,
        expires_at: datetime | None = None,
        actor: str = "system",
    ) -> Grant:
        ceilings = _checked_grant(principal, tool, max_args, expires_at)
        made = Grant(
            grant_id=uuid.uuid4().hex,
            principal=principal,
            tool=tool,
            max_args=ceilings,
            expires_at=None if expires_at is None else expires_at.astimezone(UTC),
            created_at=self._clock.now().astimezone(UTC),
        )
        with self._lock:
            self._grants[made.grant_id] = made
        await self._audit.record(
            AuditAction.GRANT_ADDED,
            actor=actor,
            subject=made.grant_id,
            reason=f"{principal} {tool}",
        )
        return made

    async def revoke(self, grant_id: str, *, actor: str = "system") -> bool:
        now = self._clock.now().astimezone(UTC)
        with self._lock:
            found = self._grants.get(grant_id)
            if found is None or not self._in_force(found, now):
                return False
            self._grants[grant_id] = replace(found, revoked_at=now)
        await self._audit.record(AuditAction.GRANT_REVOKED, actor=actor, subject=grant_id)
        return True

    async def grants_for(self, user: str) -> list[Grant]:
        return self._active(_principals(user, await self.roles(user)))

    async def grants(self) -> list[Grant]:
        return self._active(None)

    async def check(
        self,
        user: str | None,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        run_id: str | None = None,
        step: int | None = None,
    ) -> Decision:
        decision = (
            _NO_USER if user is None else _judge(tool_name, arguments, await self.grants_for(user))
        )
        return await _audited(self._audit, user, tool_name, arguments, decision, run_id, step)


_GRANT_COLUMNS = "grant_id, principal, tool, max_args, expires_at, created_at, revoked_at"
_IN_FORCE = f"revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {_NOW})"


def _from_sql(row: Sequence[Any]) -> Grant:
    grant_id, principal, tool, max_args, expires_at, created_at, revoked_at = row
    return Grant(
        grant_id=grant_id,
        principal=principal,
        tool=tool,
        max_args=None if max_args is None else json.loads(max_args),
        expires_at=_at(expires_at),
        created_at=datetime.fromtimestamp(created_at, UTC),
        revoked_at=_at(revoked_at),
    )


class _SqlitePermissions:
    """Permissions in the ``principals`` and ``grants`` tables of a SQLite store."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._audit = audit_log(store)

    async def set_roles(self, user: str, roles: Sequence[str]) -> None:
        encoded = json.dumps(sorted(set(roles)))

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT INTO principals (user_id, roles) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET roles = excluded.roles",
                (user, encoded),
            )

        await self._store.write(work)

    async def roles(self, user: str) -> tuple[str, ...]:
        rows = self._store.query("SELECT roles FROM principals WHERE user_id = ?", user)
        return tuple(json.loads(rows[0][0])) if rows else ()

    async def grant(
        self,
        principal: str,
        tool: str,
        *,
        max_args: Mapping[str, float] | None = None,
        expires_at: datetime | None = None,
        actor: str = "system",
    ) -> Grant:
        ceilings = _checked_grant(principal, tool, max_args, expires_at)
        grant_id = uuid.uuid4().hex
        expires = None if expires_at is None else expires_at.timestamp()

        def work(conn: sqlite3.Connection, now: float) -> Grant:
            conn.execute(
                f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    grant_id,
                    principal,
                    tool,
                    None if ceilings is None else json.dumps(ceilings, sort_keys=True),
                    expires,
                    now,
                ),
            )
            return Grant(
                grant_id=grant_id,
                principal=principal,
                tool=tool,
                max_args=ceilings,
                expires_at=_at(expires),
                created_at=datetime.fromtimestamp(now, UTC),
            )

        made = await self._store.write(work)
        await self._audit.record(
            AuditAction.GRANT_ADDED, actor=actor, subject=grant_id, reason=f"{principal} {tool}"
        )
        return made

    async def revoke(self, grant_id: str, *, actor: str = "system") -> bool:
        def work(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                f"UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND {_IN_FORCE}",
                (now, grant_id),
            )
            return cursor.rowcount == 1

        revoked = await self._store.write(work)
        if revoked:
            await self._audit.record(AuditAction.GRANT_REVOKED, actor=actor, subject=grant_id)
        return revoked

    async def grants_for(self, user: str) -> list[Grant]:
        principals = _principals(user, await self.roles(user))
        marks = ", ".join("?" for _ in principals)
        rows = self._store.query(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE principal IN ({marks}) AND {_IN_FORCE} "
            "ORDER BY created_at, grant_id",
            *principals,
        )
        return [_from_sql(row) for row in rows]

    async def grants(self) -> list[Grant]:
        rows = self._store.query(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE {_IN_FORCE} ORDER BY created_at, grant_id"
        )
        return [_from_sql(row) for row in rows]

    async def check(
        self,
        user: str | None,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        run_id: str | None = None,
        step: int | None = None,
    ) -> Decision:
        decision = (
            _NO_USER if user is None else _judge(tool_name, arguments, await self.grants_for(user))
        )
        return await _audited(self._audit, user, tool_name, arguments, decision, run_id, step)
