"""Approvals: when to ask a person before a tool call, and single-use answers.

:class:`ApprovalPolicy` is a pure rule: given a tool, its arguments and the model's
confidence, :meth:`~ApprovalPolicy.decide` answers with a :class:`Verdict` (ask or act,
and why).

:class:`Approvals` keeps the requests. :meth:`~Approvals.request` opens one for a run's
step (idempotent: the same step gets the same request back), a person approves or denies
it with :meth:`~Approvals.decide`, and :meth:`~Approvals.consume` spends an approval:
allowed only once, only for the tool and the exact arguments (their sha256) that were
approved, and only before the request expires. Every new request, decision, expiry and
consumption writes one entry to the store's audit log
(:func:`~tether.governance.audit.audit_log`).

Implementations, chosen by :func:`approvals`: on a :class:`~tether.store.SqliteStore` the
``approvals`` table (schema 8) of its file, judged on the database clock; on an
:class:`~tether.store.InMemoryStore` a dict that lives as long as the store, judged on its
clock. With ``Tether(approvals=ApprovalPolicy(...))`` the run loop asks before each call
the policy picks, pauses the run in ``waiting_approval``, and spends the approval when the
run continues (see :mod:`tether.run.effects`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from tether.clock import Clock
from tether.errors import ConfigurationError, RunStateError
from tether.governance.audit import AuditAction, AuditLog, audit_log, hash_arguments
from tether.store import InMemoryStore, SqliteStore, Store
from tether.tools.tool import Risk, Tool

__all__ = [
    "ApprovalPolicy",
    "ApprovalRequest",
    "ApprovalStatus",
    "Approvals",
    "Consumed",
    "Verdict",
    "approvals",
]

_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The answer of :meth:`ApprovalPolicy.decide`."""

    ask: bool
    """Whether a person must approve the call first."""
    reasons: tuple[str, ...] = ()
    """Why it must (empty when the call may go ahead)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalPolicy:
    """When a tool call needs a person's approval. Pure: no store, no clock.

    Raises:
        ConfigurationError: An unknown risk, a threshold that is not a finite number, an
            empty keyword or a ``min_confidence`` outside ``[0, 1]``.
    """

    ask_for_risks: frozenset[Risk] = frozenset({Risk.EXTERNAL, Risk.IRREVERSIBLE})
    """Tools of these risks always ask."""
    ask_for_tools: frozenset[str] = frozenset()
    """Tools, by name, that always ask (whatever their risk). Default none."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Ask when the numeric argument of that name is over the threshold (equal is fine).
    An argument of that name that is not a number also asks (it cannot be judged)."""
    keywords: tuple[str, ...] = ()
    """Ask when any string argument (nested ones included) contains one of these,
    case-insensitive (a plain substring: ``"all"`` matches ``"install"``)."""
    min_confidence: float | None = None
    """Ask when the model reports a confidence below this. ``None``: confidence is
    ignored. A call without a reported confidence is not asked for this reason."""
    ttl: timedelta = timedelta(hours=24)
    """How long a person has to decide, and the approved call to run. A request that
    lapses is a denial: the model is told ``approval_expired``. Default 24 hours."""
    approver_role: str | None = None
    """A role an approver must hold (see ``tether grants roles``). Default: anyone."""

    def __post_init__(self) -> None:
        risks: set[Risk] = set()
        for risk in self.ask_for_risks:
            try:
                risks.add(Risk(risk))
            except ValueError:
                raise ConfigurationError(f"unknown risk {risk!r}") from None
        thresholds: dict[str, float] = {}
        for name, limit in self.thresholds.items():
            if not name or not _is_number(limit) or not math.isfinite(limit):
                raise ConfigurationError(
                    f"the threshold of {name!r} must be a finite number, not {limit!r}"
                )
            thresholds[name] = limit
        if isinstance(self.ask_for_tools, str):
            raise ConfigurationError("ask_for_tools is a set of tool names, not one string")
        if not all(isinstance(name, str) and name for name in self.ask_for_tools):
            raise ConfigurationError(f"ask_for_tools must hold tool names: {self.ask_for_tools!r}")
        if isinstance(self.keywords, str):
            raise ConfigurationError("keywords is a tuple of strings, not one string")
        for keyword in self.keywords:
            if not isinstance(keyword, str) or not keyword.strip():
                raise ConfigurationError(f"a keyword must be a non-empty string, not {keyword!r}")
        _check_confidence("min_confidence", self.min_confidence)
        if not isinstance(self.ttl, timedelta) or not self.ttl.total_seconds() > 0:
            raise ConfigurationError(f"ttl must be a positive timedelta, not {self.ttl!r}")
        if self.approver_role is not None and not self.approver_role.strip():
            raise ConfigurationError("approver_role must be a non-empty role name or None")
        object.__setattr__(self, "ask_for_risks", frozenset(risks))
        object.__setattr__(self, "ask_for_tools", frozenset(self.ask_for_tools))
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "keywords", tuple(self.keywords))

    def decide(
        self, tool: Tool, arguments: Mapping[str, Any], *, confidence: float | None = None
    ) -> Verdict:
        """Say whether a call must wait for a person, and why.

        Args:
            tool: The tool called (its name and declared risk are used).
            arguments: The call's validated arguments.
            confidence: The model's reported confidence in ``[0, 1]``. Default: none.

        Raises:
            ConfigurationError: ``confidence`` outside ``[0, 1]``.
        """
        _check_confidence("confidence", confidence)
        reasons: list[str] = []
        if tool.name in self.ask_for_tools:
            reasons.append(f"tool {tool.name!r} always needs approval")
        elif tool.risk in self.ask_for_risks:
            reasons.append(f"tool {tool.name!r} has risk {tool.risk.value}")
        for name, limit in sorted(self.thresholds.items()):
            if name not in arguments:
                continue
            value = arguments[name]
            if not _is_number(value):
                reasons.append(f"argument {name!r} is not a number to compare with {limit:g}")
            elif not value <= limit:
                reasons.append(f"argument {name!r} is {value:g}, over the threshold {limit:g}")
        texts = [text.casefold() for text in _strings(arguments)]
        reasons.extend(
            f"an argument contains {keyword!r}"
            for keyword in self.keywords
            if any(keyword.casefold() in text for text in texts)
        )
        if (
            self.min_confidence is not None
            and confidence is not None
            and confidence < self.min_confidence
        ):
            reasons.append(
                f"confidence {confidence:g} is below the minimum {self.min_confidence:g}"
            )
        return Verdict(ask=bool(reasons), reasons=tuple(reasons))


def _check_confidence(name: str, value: float | None) -> None:
    if value is None:
        return
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{name} must be a number in [0, 1], not {value!r}")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (mapping values, list items), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


class ApprovalStatus(StrEnum):
    """Where an approval request stands."""

    PENDING = "pending"
    """Waiting for a person."""
    APPROVED = "approved"
    """Approved, not yet used."""
    DENIED = "denied"
    """Refused by a person."""
    EXPIRED = "expired"
    """Lapsed before it was decided or used."""
    USED = "used"
    """Approved and spent by one call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """One call waiting for, or holding, a person's approval."""

    approval_id: str
    run_id: str
    step: int
    tool: str
    args_hash: str
    """sha256 of the canonical JSON of the call's arguments."""
    reasons: tuple[str, ...]
    """Why approval was asked for."""
    requested_at: datetime
    expires_at: datetime
    """After this the request can be neither decided nor used."""
    status: ApprovalStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    approver_role: str | None = None
    """The role a person must hold to decide it; ``None``: anyone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Consumed:
    """The answer of :meth:`Approvals.consume`."""

    allowed: bool
    """Whether the call may run (the approval is now spent)."""
    reason: str
    """Why, for people and for the model."""
    approval_id: str | None = None
    """The request judged; ``None`` when there was none for the step."""
    expired: bool = False
    """Refused because the request lapsed before the call."""


@runtime_checkable
class Approvals(Protocol):
    """Approval requests of tool calls, decided by people and spent once."""

    async def request(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        ttl: timedelta,
        reasons: Sequence[str] = (),
        approver_role: str | None = None,
    ) -> ApprovalRequest:
        """Open a request for a run's step, or return the one it already has.

        A new request records ``approval_requested``; a repeat for the same ``(run_id,
        step)`` returns the existing request unchanged and records nothing, except that an
        expired request is replaced by a fresh one when the store was opened with
        ``expired_means_denied=False``.

        Args:
            run_id: The run.
            step: The run's step of the call.
            tool: The tool's name.
            arguments: The call's validated arguments (kept only as a hash).
            ttl: How long the request may be decided and used.
            reasons: Why approval is asked for (see :meth:`ApprovalPolicy.decide`).
            approver_role: A role whoever decides must hold, kept with the request and
                checked by :meth:`decide`. Default: anyone may decide.

        Raises:
            ConfigurationError: An empty run id or tool, a negative step or a ``ttl``
                that is not positive.
        """
        ...

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        """Return a request (its status ``expired`` once past expiry), or ``None``."""
        ...

    async def pending(self) -> list[ApprovalRequest]:
        """Return the requests waiting for a person (not expired), oldest first."""
        ...

    async def of_run(self, run_id: str) -> list[ApprovalRequest]:
        """Return every request of a run (``expired`` once past expiry), by step."""
        ...

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        approver: str,
        roles: Collection[str] = (),
        required_role: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        """Approve or deny a pending request; record ``approved`` or ``denied``.

        Args:
            approval_id: The request.
            approve: ``True`` to approve, ``False`` to deny.
            approver: Who decides (recorded).
            roles: The approver's roles.
            required_role: A role the approver must hold. Default: none.
            comment: A note kept with the decision. Default: none.

        Raises:
            ConfigurationError: An empty approver, an unknown request, or an approver
                without ``required_role`` (recorded as ``deny``).
            RunStateError: The request was already decided, or has expired (it becomes
                ``expired``, recorded).
        """
        ...

    async def consume(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        resumed: bool = False,
    ) -> Consumed:
        """Spend the approval of a call: once, for exactly these arguments, before expiry.

        Allowed only when the step's request is ``approved``, unexpired, and names this
        tool and the sha256 of these arguments; it atomically becomes ``used`` and
        ``privileged_call`` is recorded. Anything else is refused and recorded as ``deny``
        (or ``expired`` when the approval lapsed).

        Args:
            run_id: The run.
            step: The run's step of the call.
            tool: The tool's name.
            arguments: The call's validated arguments (compared by their sha256).
            resumed: The run is resuming after a crash, and its journal shows this step's
                call never started: a request already ``used`` by this same step, tool
                and arguments was spent by the attempt that crashed before the call ran,
                and is honoured once more (there is no other call it could authorise).
                Default ``False``: ``used`` is refused.
        """
        ...


def approvals(
    store: Store, *, clock: Clock | None = None, expired_means_denied: bool = True
) -> Approvals:
    """Return the approval requests kept in ``store``.

    Args:
        store: A :class:`~tether.store.SqliteStore` (its ``approvals`` table) or an
            :class:`~tether.store.InMemoryStore` (one set per store, shared by every call).
        clock: The clock expiry is judged on for an in-memory store. Default: the store's.
            SQLite stores use the database clock.
        expired_means_denied: What a lapsed request means. ``True`` (default): a denial;
            asking again for the same step returns the expired request. ``False``: asking
            again for the step opens a fresh request. Either way an expired approval is
            never honoured.

    Raises:
        ConfigurationError: The store keeps no approvals.
    """
    if isinstance(store, SqliteStore):
        return _SqliteApprovals(store, expired_means_denied)
    if isinstance(store, InMemoryStore):
        table = _memory.get(store)
        if table is None:
            table = _memory[store] = _MemoryTable()
        return _MemoryApprovals(table, store, clock or store._clock, expired_means_denied)
    raise ConfigurationError(f"{type(store).__name__} keeps no approvals")


# --- the rules shared by both implementations ------------------------------------------


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _lapsed(found: ApprovalRequest, now: float) -> bool:
    """Whether a live (pending or approved) request is past its expiry."""
    live = found.status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
    return live and found.expires_at.timestamp() <= now


def _seen(found: ApprovalRequest, now: float) -> ApprovalRequest:
    """The request as callers see it: ``expired`` once past expiry."""
    return replace(found, status=ApprovalStatus.EXPIRED) if _lapsed(found, now) else found


def _check_request(run_id: str, step: int, tool: str, ttl: timedelta) -> float:
    if not run_id:
        raise ConfigurationError("an approval request needs a run id")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigurationError(f"step must be a non-negative integer, not {step!r}")
    if not tool:
        raise ConfigurationError("an approval request needs a tool name")
    seconds = ttl.total_seconds()
    if not seconds > 0:
        raise ConfigurationError(f"ttl must be positive, not {ttl}")
    return seconds


def _new_request(
    run_id: str,
    step: int,
    tool: str,
    args_hash: str,
    reasons: Sequence[str],
    now: float,
    ttl: float,
    approver_role: str | None,
) -> ApprovalRequest:
    return ApprovalRequest(
        approval_id=uuid.uuid4().hex,
        run_id=run_id,
        step=step,
        tool=tool,
        args_hash=args_hash,
        reasons=tuple(reasons),
        requested_at=_at(now),
        expires_at=_at(now + ttl),
        status=ApprovalStatus.PENDING,
        approver_role=approver_role,
    )


def _renewable(found: ApprovalRequest, now: float, expired_means_denied: bool) -> bool:
    expired = found.status is ApprovalStatus.EXPIRED or _lapsed(found, now)
    return expired and not expired_means_denied


@dataclass(frozen=True, slots=True)
class _Decided:
    """What :meth:`Approvals.decide` did: the request as stored now, or why not."""

    request: ApprovalRequest | None
    error: Exception | None = None
    expired_now: bool = False


def _decide(
    found: ApprovalRequest | None,
    approval_id: str,
    now: float,
    approve: bool,
    approver: str,
    comment: str | None,
) -> _Decided:
    if found is None:
        return _Decided(None, ConfigurationError(f"no approval request {approval_id!r}"))
    if _lapsed(found, now) or found.status is ApprovalStatus.EXPIRED:
        return _Decided(
            replace(found, status=ApprovalStatus.EXPIRED),
            RunStateError(f"approval request {approval_id} expired at {found.expires_at}"),
            expired_now=found.status is not ApprovalStatus.EXPIRED,
        )
    if found.status is not ApprovalStatus.PENDING:
        return _Decided(
            found,
            RunStateError(f"approval request {approval_id} was already {found.status.value}"),
        )
    return _Decided(
        replace(
            found,
            status=ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED,
            decided_by=approver,
            decided_at=_at(now),
            comment=comment,
        )
    )


def _consume(
    found: ApprovalRequest | None,
    step: int,
    tool: str,
    args_hash: str,
    now: float,
    resumed: bool = False,
) -> tuple[Consumed, ApprovalStatus | None]:
    """The answer to one consume, and the status the request moves to (if any)."""
    if found is None:
        return Consumed(allowed=False, reason=f"no approval was requested for step {step}"), None
    approval_id = found.approval_id
    if found.tool != tool:
        reason = f"approval {approval_id} is for tool {found.tool!r}, not {tool!r}"
        return Consumed(allowed=False, reason=reason, approval_id=approval_id), None
    if found.args_hash != args_hash:
        reason = f"approval {approval_id} is for other arguments"
        return Consumed(allowed=False, reason=reason, approval_id=approval_id), None
    if _lapsed(found, now) or found.status is ApprovalStatus.EXPIRED:
        moved = ApprovalStatus.EXPIRED if found.status is not ApprovalStatus.EXPIRED else None
        reason = f"approval {approval_id} expired at {found.expires_at}"
        refused = Consumed(allowed=False, reason=reason, approval_id=approval_id, expired=True)
        return refused, moved
    if found.status is ApprovalStatus.APPROVED:
        reason = f"approved by {found.decided_by} ({approval_id})"
        return Consumed(allowed=True, reason=reason, approval_id=approval_id), ApprovalStatus.USED
    if found.status is ApprovalStatus.USED and resumed:
        reason = f"approved by {found.decided_by} ({approval_id}); spent before a restart"
        return Consumed(allowed=True, reason=reason, approval_id=approval_id), None
    why = {
        ApprovalStatus.PENDING: "is still waiting for a person",
        ApprovalStatus.DENIED: f"was denied by {found.decided_by}",
        ApprovalStatus.USED: "was already used",
    }[found.status]
    return Consumed(
        allowed=False, reason=f"approval {approval_id} {why}", approval_id=approval_id
    ), None


class _Audited:
    """The audit entries both implementations write, and the role rule they share."""

    _audit: AuditLog

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        raise NotImplementedError

    async def _required_role(self, approval_id: str, required_role: str | None) -> str | None:
        """The role a decider needs: the one asked for, else the one kept with the request."""
        if required_role is not None:
            return required_role
        found = await self.get(approval_id)
        return None if found is None else found.approver_role

    async def _requested(self, made: ApprovalRequest, arguments: Mapping[str, Any]) -> None:
        why = "; ".join(made.reasons) or "no reason given"
        await self._audit.record(
            AuditAction.APPROVAL_REQUESTED,
            actor="system",
            run_id=made.run_id,
            step=made.step,
            subject=made.tool,
            arguments=arguments,
            reason=f"approval {made.approval_id}: {why}",
        )

    async def _expired(self, found: ApprovalRequest) -> None:
        await self._audit.record(
            AuditAction.EXPIRED,
            actor="system",
            run_id=found.run_id,
            step=found.step,
            subject=found.tool,
            reason=f"approval {found.approval_id} expired at {found.expires_at.isoformat()}",
        )

    async def _role_refused(self, approval_id: str, approver: str, required_role: str) -> None:
        await self._audit.record(
            AuditAction.DENY,
            actor=approver,
            subject=approval_id,
            reason=f"{approver} lacks role {required_role!r} to decide approval {approval_id}",
        )

    async def _decided(self, outcome: _Decided, approver: str) -> ApprovalRequest:
        if outcome.expired_now and outcome.request is not None:
            await self._expired(outcome.request)
        if outcome.error is not None:
            raise outcome.error
        made = outcome.request
        assert made is not None
        approved = made.status is ApprovalStatus.APPROVED
        await self._audit.record(
            AuditAction.APPROVED if approved else AuditAction.DENIED,
            actor=approver,
            run_id=made.run_id,
            step=made.step,
            subject=made.tool,
            reason=f"approval {made.approval_id}" + (f": {made.comment}" if made.comment else ""),
        )
        return made

    async def _consumed(
        self,
        answer: Consumed,
        moved: ApprovalStatus | None,
        found: ApprovalRequest | None,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
    ) -> Consumed:
        if moved is ApprovalStatus.EXPIRED and found is not None:
            await self._expired(found)
            return answer
        await self._audit.record(
            AuditAction.PRIVILEGED_CALL if answer.allowed else AuditAction.DENY,
            actor=(found.decided_by if found is not None else None) or "system",
            run_id=run_id,
            step=step,
            subject=tool,
            arguments=arguments,
            reason=answer.reason,
        )
        return answer


def _check_decider(approver: str, roles: Collection[str], required_role: str | None) -> bool:
    """Validate the approver; return whether they hold ``required_role``."""
    if not approver:
        raise ConfigurationError("a decision needs an approver")
    if isinstance(roles, str):
        raise ConfigurationError("roles is a collection of role names, not one string")
    return required_role is None or required_role in roles


def _role_error(approver: str, required_role: str | None, approval_id: str) -> ConfigurationError:
    return ConfigurationError(
        f"{approver} may not decide approval {approval_id}: role {required_role!r} is required"
    )


# --- in memory --------------------------------------------------------------------------


class _MemoryTable:
    """The requests of one :class:`~tether.store.InMemoryStore`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[str, ApprovalRequest] = {}
        self.by_step: dict[tuple[str, int], str] = {}


_memory: weakref.WeakKeyDictionary[InMemoryStore, _MemoryTable] = weakref.WeakKeyDictionary()


class _MemoryApprovals(_Audited):
    """Approvals of an :class:`~tether.store.InMemoryStore`: a dict, on a clock."""

    def __init__(
        self, table: _MemoryTable, store: InMemoryStore, clock: Clock, expired_means_denied: bool
    ) -> None:
        self._table = table
        self._clock = clock
        self._audit = audit_log(store, clock=clock)
        self._expired_means_denied = expired_means_denied

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def request(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        ttl: timedelta,
        reasons: Sequence[str] = (),
        approver_role: str | None = None,
    ) -> ApprovalRequest:
        seconds = _check_request(run_id, step, tool, ttl)
        args_hash = hash_arguments(arguments)
        now = self._now()
        table = self._table
        with table.lock:
            known = table.by_step.get((run_id, step))
            found = None if known is None else table.by_id[known]
            if found is not None and not _renewable(found, now, self._expired_means_denied):
                return _seen(found, now)
            if found is not None:
                del table.by_id[found.approval_id]
            made = _new_request(run_id, step, tool, args_hash, reasons, now, seconds, approver_role)
            table.by_id[made.approval_id] = made
            table.by_step[(run_id, step)] = made.approval_id
        await self._requested(made, arguments)
        return made

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        with self._table.lock:
            found = self._table.by_id.get(approval_id)
        return None if found is None else _seen(found, self._now())

    async def pending(self) -> list[ApprovalRequest]:
        now = self._now()
        with self._table.lock:
            found = list(self._table.by_id.values())
        waiting = [r for r in found if r.status is ApprovalStatus.PENDING and not _lapsed(r, now)]
        return sorted(waiting, key=lambda r: (r.requested_at, r.run_id, r.step))

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        approver: str,
        roles: Collection[str] = (),
        required_role: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        required_role = await self._required_role(approval_id, required_role)
        if not _check_decider(approver, roles, required_role):
            assert required_role is not None
            await self._role_refused(approval_id, approver, required_role)
            raise _role_error(approver, required_role, approval_id)
        now = self._now()
        with self._table.lock:
            found = self._table.by_id.get(approval_id)
            outcome = _decide(found, approval_id, now, approve, approver, comment)
            if outcome.request is not None and outcome.request != found:
                self._table.by_id[approval_id] = outcome.request
        return await self._decided(outcome, approver)

    async def of_run(self, run_id: str) -> list[ApprovalRequest]:
        now = self._now()
        with self._table.lock:
            found = [r for r in self._table.by_id.values() if r.run_id == run_id]
        return sorted((_seen(r, now) for r in found), key=lambda r: r.step)

    async def consume(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        resumed: bool = False,
    ) -> Consumed:
        args_hash = hash_arguments(arguments)
        now = self._now()
        table = self._table
        with table.lock:
            known = table.by_step.get((run_id, step))
            found = None if known is None else table.by_id[known]
            answer, moved = _consume(found, step, tool, args_hash, now, resumed)
            if found is not None and moved is not None:
                table.by_id[found.approval_id] = replace(found, status=moved)
        return await self._consumed(answer, moved, found, run_id, step, tool, arguments)


# --- SQLite -----------------------------------------------------------------------------

_COLUMNS = (
    "approval_id, run_id, step, tool, args_hash, reasons, requested_at, expires_at, status, "
    "decided_by, decided_at, comment, approver_role"
)


def _from_sql(row: Sequence[Any]) -> ApprovalRequest:
    (
        approval_id,
        run_id,
        step,
        tool,
        args_hash,
        reasons,
        requested_at,
        expires_at,
        status,
        decided_by,
        decided_at,
        comment,
        approver_role,
    ) = row
    return ApprovalRequest(
        approval_id=approval_id,
        run_id=run_id,
        step=int(step),
        tool=tool,
        args_hash=args_hash,
        reasons=tuple(json.loads(reasons)) if reasons else (),
        requested_at=_at(requested_at),
        expires_at=_at(expires_at),
        status=ApprovalStatus(status),
        decided_by=decided_by,
        decided_at=None if decided_at is None else _at(decided_at),
        comment=comment,
        approver_role=approver_role,
    )


def _select(conn: sqlite3.Connection, where: str, *params: Any) -> ApprovalRequest | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM approvals WHERE {where}", params).fetchone()
    return None if row is None else _from_sql(row)


def _store_status(conn: sqlite3.Connection, request: ApprovalRequest) -> None:
    conn.execute(
        "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ? "
        "WHERE approval_id = ?",
        (
            request.status.value,
            request.decided_by,
            None if request.decided_at is None else request.decided_at.timestamp(),
            request.comment,
            request.approval_id,
        ),
    )


class _SqliteApprovals(_Audited):
    """Approvals in the ``approvals`` table of a :class:`~tether.store.SqliteStore`.

    Every read-judge-write runs inside one :meth:`~tether.store.SqliteStore.write`, so two
    consumers of the same approval cannot both see it ``approved``.
    """

    def __init__(self, store: SqliteStore, expired_means_denied: bool) -> None:
        self._store = store
        self._audit = audit_log(store)
        self._expired_means_denied = expired_means_denied

    async def request(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        ttl: timedelta,
        reasons: Sequence[str] = (),
        approver_role: str | None = None,
    ) -> ApprovalRequest:
        seconds = _check_request(run_id, step, tool, ttl)
        args_hash = hash_arguments(arguments)
        expired_means_denied = self._expired_means_denied

        def work(conn: sqlite3.Connection, now: float) -> tuple[ApprovalRequest, bool]:
            found = _select(conn, "run_id = ? AND step = ?", run_id, step)
            if found is not None and not _renewable(found, now, expired_means_denied):
                return _seen(found, now), False
            if found is not None:
                conn.execute("DELETE FROM approvals WHERE approval_id = ?", (found.approval_id,))
            made = _new_request(run_id, step, tool, args_hash, reasons, now, seconds, approver_role)
            conn.execute(
                f"INSERT INTO approvals ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                (
                    made.approval_id,
                    run_id,
                    step,
                    tool,
                    args_hash,
                    json.dumps(list(made.reasons)),
                    now,
                    now + seconds,
                    made.status.value,
                    approver_role,
                ),
            )
            # Read back, so the datetimes match what later reads give.
            stored = _select(conn, "approval_id = ?", made.approval_id)
            assert stored is not None
            return stored, True

        made, created = await self._store.write(work)
        if created:
            await self._requested(made, arguments)
        return made

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        rows = self._store.query(
            f"SELECT {_COLUMNS}, {_NOW} FROM approvals WHERE approval_id = ?", approval_id
        )
        if not rows:
            return None
        return _seen(_from_sql(rows[0][:-1]), float(rows[0][-1]))

    async def pending(self) -> list[ApprovalRequest]:
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM approvals WHERE status = ? AND expires_at > {_NOW} "
            "ORDER BY requested_at, run_id, step",
            ApprovalStatus.PENDING.value,
        )
        return [_from_sql(row) for row in rows]

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        approver: str,
        roles: Collection[str] = (),
        required_role: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRequest:
        required_role = await self._required_role(approval_id, required_role)
        if not _check_decider(approver, roles, required_role):
            assert required_role is not None
            await self._role_refused(approval_id, approver, required_role)
            raise _role_error(approver, required_role, approval_id)

        def work(conn: sqlite3.Connection, now: float) -> _Decided:
            found = _select(conn, "approval_id = ?", approval_id)
            outcome = _decide(found, approval_id, now, approve, approver, comment)
            if outcome.request is not None and outcome.request != found:
                _store_status(conn, outcome.request)
                stored = _select(conn, "approval_id = ?", approval_id)
                return replace(outcome, request=stored)
            return outcome

        return await self._decided(await self._store.write(work), approver)

    async def of_run(self, run_id: str) -> list[ApprovalRequest]:
        rows = self._store.query(
            f"SELECT {_COLUMNS}, {_NOW} FROM approvals WHERE run_id = ? ORDER BY step", run_id
        )
        return [_seen(_from_sql(row[:-1]), float(row[-1])) for row in rows]

    async def consume(
        self,
        run_id: str,
        step: int,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        resumed: bool = False,
    ) -> Consumed:
        args_hash = hash_arguments(arguments)

        def work(
            conn: sqlite3.Connection, now: float
        ) -> tuple[Consumed, ApprovalStatus | None, ApprovalRequest | None]:
            found = _select(conn, "run_id = ? AND step = ?", run_id, step)
            answer, moved = _consume(found, step, tool, args_hash, now, resumed)
            if found is not None and moved is not None:
                _store_status(conn, replace(found, status=moved))
            return answer, moved, found

        answer, moved, found = await self._store.write(work)
        return await self._consumed(answer, moved, found, run_id, step, tool, arguments)
