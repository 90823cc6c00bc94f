"""The runtime: accepts, runs, resumes, reviews and cancels runs against a store.

Every run is journaled and owned through a lease (see :mod:`tether.store`). ``run``
accepts and executes at once; ``submit`` only accepts, for a worker
(:mod:`tether.worker`) or another process to execute. ``resume`` continues an interrupted
run from its journal without repeating recorded model calls or tool calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from tether.clock import Clock, SystemClock
from tether.errors import (
    ConfigurationError,
    LeaseLostError,
    ReplayDivergedError,
    RunNotFoundError,
    RunStateError,
)
from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    BudgetRaised,
    Event,
    ReviewDecided,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.failpoints import failpoint
from tether.governance.approvals import ApprovalRequest, Approvals, ApprovalStatus, approvals
from tether.governance.audit import AuditAction, audit_log
from tether.governance.budgets import Budget, Budgets, budget_book
from tether.governance.permissions import Permissions
from tether.governance.permissions import permissions as store_permissions
from tether.ids import new_run_id
from tether.loading import load_agent
from tether.models import Price
from tether.observe.health import AgentHealthMonitor
from tether.run import (
    AgentSpec,
    BudgetExhaustedAction,
    InDoubt,
    Journal,
    Replay,
    Run,
    RunResult,
    Subscriber,
    result_from_journal,
)
from tether.run.effects import approval_decided, unknown_outcome
from tether.status import RunStatus
from tether.store import Lease, RunRecord, Store, open_store

__all__ = ["DEFAULT_LEASE", "MAX_CRASHES", "Decision", "Tether", "run_blocking"]

logger = logging.getLogger("tether")

_T = TypeVar("_T")
_OutputT = TypeVar("_OutputT")

DEFAULT_LEASE = timedelta(seconds=30)
"""How long a claim lasts without renewal. Renewed every third of it while a run runs."""

MAX_CRASHES = 3
"""A run whose owner died more often than this ends ``failed`` with ``crash_loop``."""

Decision = Literal["retry", "skip", "result"]
"""What a person decides about an in-doubt call."""


class Tether:
    """Runs agents and keeps their journals.

    Args:
        store: A :class:`~tether.store.Store`, or a URL for :func:`~tether.store.open_store`
            (``sqlite:///path.db``, ``memory://``). Default: ``TETHER_STORE``, else
            ``./.tether/tether.db``.
        clock: The source of time for runs. Default: the system clock.
        subscribers: Functions called with every durable event of every run, in order.
        owner: Name written on leases. Default: ``<host>-<pid>``.
        lease_for: How long a claim lasts without renewal. Default 30 s.
        max_crashes: Owner deaths after which a run ends ``crash_loop``. Default 3.
        in_doubt: When an ``at_most_once`` call is in doubt after a crash, ``"wait"``
            (default) pauses the run in ``needs_review`` until :meth:`review` decides and
            then continues it; ``"end"`` ends it ``needs_review`` for good, the call's
            outcome recorded as unknown.
        budgets: Money budgets every live model call is reserved against (see
            :mod:`tether.governance.budgets`). Default none.
        prices: Price of each model by its name, for the budgets' worst case. A model
            without one is refused while a budget applies. Default none.
        health: A health monitor fed with every event; when its policy refuses critical
            agents, a new run of a critical agent ends ``blocked`` (error class
            ``agent_unhealthy``) without calling anything. Default none.
        budget_exhausted: When a budget refuses a run's next model call, ``"end"``
            (default) ends the run ``budget_exceeded``; ``"wait"`` pauses it in
            ``waiting_approval`` until :meth:`raise_budget` (``tether budgets raise``).
        permissions: Tool permissions every validated call of a run is checked against,
            with the run's user, before it runs (see :mod:`tether.governance.permissions`):
            ``True`` for the permissions kept in ``store``, or a
            :class:`~tether.governance.permissions.Permissions`. A denied call is not run
            and the model is told ``permission_denied``. Default ``False``: no checks
            (and no work per call).
    """

    def __init__(
        self,
        *,
        store: Store | str | None = None,
        clock: Clock | None = None,
        subscribers: Sequence[Subscriber] = (),
        owner: str | None = None,
        lease_for: timedelta = DEFAULT_LEASE,
        max_crashes: int = MAX_CRASHES,
        in_doubt: InDoubt = "wait",
        budgets: Sequence[Budget] = (),
        prices: Mapping[str, Price] | None = None,
        permissions: Permissions | bool = False,
        budget_exhausted: BudgetExhaustedAction = "end",
        health: AgentHealthMonitor | None = None,
    ) -> None:
        if in_doubt not in ("wait", "end"):
            raise ConfigurationError(f"in_doubt must be 'wait' or 'end', not {in_doubt!r}")
        if budget_exhausted not in ("wait", "end"):
            raise ConfigurationError(
                f"budget_exhausted must be 'end' or 'wait', not {budget_exhausted!r}"
            )
        self.budget_exhausted: BudgetExhaustedAction = budget_exhausted
        self.health = health
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.subscribers = (*subscribers, *(() if health is None else (health,)))
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_for = lease_for
        self.max_crashes = max_crashes
        self.in_doubt: InDoubt = in_doubt
        self.budgets: Budgets | None = (
            Budgets(budgets, budget_book(self.store), prices=prices, audit=audit_log(self.store))
            if budgets
            else None
        )
        self.permissions: Permissions | None = (
            store_permissions(self.store) if permissions is True else permissions or None
        )
        self.approvals: Approvals | None = None
        """The approval requests kept in :attr:`store` (``None`` if it keeps none)."""
        with contextlib.suppress(ConfigurationError):
            self.approvals = approvals(self.store, clock=clock)

    async def submit(
        self, agent: str | AgentSpec[Any], task: str, *, user: str | None = None
    ) -> str:
        """Accept a run without executing it; return its id.

        Args:
            agent: An agent reference (``module:attr`` or ``file.py:attr``) that any
                process can load, or an agent object (then only a process that has the
                object can execute the run, through :meth:`resume` with ``agent=``).
            task: What the user asks for.
            user: Id of the user the run acts for. Default none.

        Raises:
            AgentLoadError: ``agent`` is a reference that does not load.
        """
        reference = agent if isinstance(agent, str) else None
        definition = load_agent(agent) if isinstance(agent, str) else agent
        started = self._started(definition, task, user, reference)
        await self.store.create_run(started)
        self._announce(started, ())
        return started.run_id

    async def run(
        self,
        agent: AgentSpec[_OutputT],
        task: str,
        *,
        user: str | None = None,
        agent_ref: str | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[_OutputT]:
        """Accept a run of ``agent`` on ``task``, execute it to its end, return the result.

        Never raises for an expected ending (limits, model failure, loops): read
        ``result.status``.

        Args:
            agent: The agent definition.
            task: What the user asks for.
            user: Id of the user the run acts for. Default none.
            agent_ref: Where other processes can load ``agent`` from, so a worker can
                resume the run if this process dies. Default none.
            subscribers: Extra event subscribers for this run only.
        """
        started = self._started(agent, task, user, agent_ref)
        lease = await self.store.create_run(started, owner=self.owner, lease_for=self.lease_for)
        if lease is None:
            raise RunStateError(f"the store did not claim run {started.run_id} at creation")
        self._announce(started, subscribers)
        if self.health is not None and not self.health.admits(agent.name):
            report = self.health.report("agent", agent.name)
            reasons = "; ".join(report.reasons) or "critical"
            message = f"agent {agent.name!r} is critical ({reasons}); the run was not started"
            await self.fail(lease, "agent_unhealthy", message, status=RunStatus.BLOCKED)
            return result_from_journal(await self.store.events(started.run_id))
        return await self.drive(lease, agent, subscribers=subscribers, journal=[started])

    def run_sync(
        self,
        agent: AgentSpec[_OutputT],
        task: str,
        *,
        user: str | None = None,
        agent_ref: str | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[_OutputT]:
        """Blocking :meth:`run`, for scripts. Not callable from inside an event loop."""
        return run_blocking(
            self.run(agent, task, user=user, agent_ref=agent_ref, subscribers=subscribers)
        )

    async def resume(
        self,
        run_id: str,
        *,
        agent: AgentSpec[Any] | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[Any]:
        """Continue ``run_id`` from its journal; return its result.

        Recorded model responses and tool results are replayed, not requested or run
        again. A finished run is replayed read-only and its result returned.

        Args:
            run_id: The run.
            agent: The agent; default: loaded from the run's ``agent_ref``.
            subscribers: Extra event subscribers.

        Raises:
            RunNotFoundError: No run has this id.
            RunStateError: A live worker owns the run, or calls in doubt await review.
            AgentLoadError: No agent was given and the reference does not load.
        """
        record = await self._record(run_id)
        if record.finished_at is not None:
            return await self._finished_result(record, agent)
        if record.status is RunStatus.WAITING_APPROVAL and not await self.wake(run_id):
            budget = _budget_waited_on(await self.store.events(run_id))
            if budget is not None:
                raise RunStateError(
                    f"run {run_id} waits for a person to raise budget {budget}: "
                    f"`tether budgets raise {budget} --by USD`"
                )
            waiting = ", ".join(r.approval_id for r in await self._waiting_on(run_id))
            raise RunStateError(
                f"run {run_id} waits for a person to approve {waiting or 'its calls'}: "
                "`tether approve ID` or `tether deny ID --reason TEXT`"
            )
        definition = agent or await self._load(record)
        journal = await self.store.events(run_id)
        undecided = _undecided_in_doubt(journal)
        if undecided:
            raise RunStateError(
                f"run {run_id} waits for a review of the calls at steps {undecided}: "
                f"`tether review {run_id} --retry | --skip | --result JSON`"
            )
        lease = await self.store.claim(self.owner, lease_for=self.lease_for, run_id=run_id)
        if lease is None:
            raise RunStateError(
                f"run {run_id} is owned by {record.lease_owner} until "
                f"{record.lease_expires_at}; it cannot be resumed now"
            )
        return await self.drive(lease, definition, subscribers=subscribers)

    async def _finished_result(
        self, record: RunRecord, agent: AgentSpec[Any] | None
    ) -> RunResult[Any]:
        """The result of a finished run: replayed with its agent when possible.

        Otherwise (a run cancelled or abandoned outside the loop, or whose agent cannot be
        loaded) it is read from the journal alone: ``messages`` is then empty and
        ``output`` is text.
        """
        with contextlib.suppress(ReplayDivergedError, ConfigurationError):
            definition = agent or await self._load(record)
            return await self.replay(record.run_id, agent=definition)
        return result_from_journal(await self.store.events(record.run_id))

    async def replay(self, run_id: str, *, agent: AgentSpec[Any]) -> RunResult[Any]:
        """Rebuild a run's result from its journal alone, writing nothing.

        Raises:
            ReplayDivergedError: The result needs a model call or tool call the journal
                does not record, or the code produces different events.
        """
        journal = await self.store.events(run_id)
        if not journal:
            raise RunNotFoundError(f"no run {run_id}")
        replay = Replay(journal, read_only=True)
        lease = Lease(
            run_id=run_id, owner="replay", epoch=0, attempts=0, expires_at=self.clock.now()
        )
        writer = Journal(store=self.store, lease=lease, replay=replay, subscribers=())
        run = Run(agent, writer, clock=self.clock, in_doubt=self.in_doubt, approvals=self.approvals)
        return await run.execute()

    async def review(
        self,
        run_id: str,
        decision: Decision,
        *,
        result: str | None = None,
        reviewer: str | None = None,
    ) -> list[int]:
        """Journal a person's decision about the calls in doubt; return their steps.

        The decision applies to every call of the run that is in doubt (they were cut
        short together). The run becomes ``pending`` again: :meth:`resume` it (or let a
        worker) to continue. ``retry`` runs the calls again; ``skip`` tells the model their
        outcome is unknown; ``result`` records ``result`` (JSON text) as what they returned.

        Raises:
            RunStateError: Nothing in the run is in doubt, or ``result`` is missing for a
                ``result`` decision, given for another, or not JSON.
        """
        if (decision == "result") != (result is not None):
            raise RunStateError("give `result` exactly when the decision is 'result'")
        if result is not None:
            try:
                json.loads(result)
            except ValueError as exc:
                raise RunStateError(f"`result` must be JSON: {exc}") from None
        record = await self._record(run_id)
        events = await self.store.events(run_id)
        steps = _undecided_in_doubt(events)
        if record.status is not RunStatus.NEEDS_REVIEW or not steps:
            raise RunStateError(f"run {run_id} has no call in doubt")
        if record.finished_at is not None:
            raise RunStateError(
                f"run {run_id} already ended ({record.status.value}); it cannot be reviewed"
            )
        lease = await self.store.claim(self.owner, lease_for=self.lease_for, run_id=run_id)
        if lease is None:
            raise RunStateError(f"run {run_id} is owned by {record.lease_owner}")
        calls = {e.step: e.call_id for e in events if isinstance(e, ToolCallInDoubt)}
        decided = [
            ReviewDecided(
                run_id=run_id,
                step=s,
                call_id=calls[s],
                decision=decision,
                result=result,
                reviewer=reviewer,
                at=self.clock.now(),
            )
            for s in steps
        ]
        await self.store.append(decided, lease, release=True)
        return steps

    async def approve(
        self, approval_id: str, *, approver: str, comment: str | None = None
    ) -> ApprovalRequest:
        """Approve a waiting call; its run continues once none of its calls waits.

        The approval is single use: it lets exactly that call, with exactly those
        arguments, run once, before the request expires.

        Args:
            approval_id: The request (``tether approvals`` lists them).
            approver: Who approves (recorded). Their roles come from the store's
                permissions (``tether grants roles``).
            comment: A note kept with the decision. Default none.

        Raises:
            ConfigurationError: No such request, the store keeps none, or the approver
                lacks the role the request requires.
            RunStateError: The request was already decided, or expired.
        """
        return await self._decide(approval_id, True, approver, comment)

    async def deny(self, approval_id: str, *, approver: str, reason: str) -> ApprovalRequest:
        """Deny a waiting call: it never runs, and the model is told ``reason``.

        Raises the same errors as :meth:`approve`.
        """
        if not reason.strip():
            raise ConfigurationError("a denial needs a reason, for the model and the audit log")
        return await self._decide(approval_id, False, approver, reason)

    async def pending_approvals(self) -> list[ApprovalRequest]:
        """Return the calls waiting for a person, oldest first (empty if none)."""
        return [] if self.approvals is None else await self.approvals.pending()

    async def wake(self, run_id: str) -> bool:
        """Let a run waiting for approvals continue once every request is answered.

        Journals one ``ApprovalDecided`` per answered (or expired) request and makes the
        run ``pending`` again, for a worker or :meth:`resume`. Return whether it did;
        ``False`` while a request still waits, or when the run is not waiting.
        """
        record = await self.store.get_run(run_id)
        if record is None or record.status is not RunStatus.WAITING_APPROVAL:
            return False
        if not _answered(await self._waiting_on(run_id)):
            return False
        lease = await self.store.claim(self.owner, lease_for=self.lease_for, run_id=run_id)
        if lease is None:
            return False
        # Judge again under the lease: another process may have woken it meanwhile.
        events = await self.store.events(run_id)
        waiting = await self._waiting_on(run_id, events)
        if not _answered(waiting):
            await self.store.release(lease)
            return False
        calls = {e.step: e.call_id for e in events if isinstance(e, ApprovalRequested)}
        now = self.clock.now()
        audit = audit_log(self.store, clock=self.clock)
        for request in waiting:
            if request.status is ApprovalStatus.EXPIRED:
                await audit.record(
                    AuditAction.EXPIRED,
                    actor="system",
                    run_id=run_id,
                    step=request.step,
                    subject=request.tool,
                    reason=f"approval {request.approval_id} expired unanswered",
                )
        decided = [approval_decided(r, calls[r.step], now) for r in waiting]
        await self.store.append(decided, lease, release=True)
        for event in decided:
            self._announce(event, ())
        return True

    async def wake_expired(self) -> int:
        """:meth:`wake` every run whose approvals are all answered or expired; count them."""
        if self.approvals is None:
            return 0
        waiting = await self.store.list_runs(status=RunStatus.WAITING_APPROVAL)
        return sum([await self.wake(record.run_id) for record in waiting])

    async def raise_budget(self, key: str, *, by_usd: Decimal, raised_by: str) -> list[str]:
        """Raise a budget's current window by ``by_usd``; continue the runs waiting on it.

        Args:
            key: The window's budget key, as ``tether budgets`` shows it (``user:ana:day``).
            by_usd: How much to add to the limit of its newest window (positive).
            raised_by: Who raises it (recorded in the audit log and the runs' journals).

        Returns:
            The ids of the runs that were waiting on it and are ``pending`` again.

        Raises:
            ConfigurationError: The store keeps no budgets, the amount is not positive,
                or no window has this key.
        """
        book = self.budgets.book if self.budgets is not None else budget_book(self.store)
        raised = await book.raise_limit(key, by_usd)
        await audit_log(self.store, clock=self.clock).record(
            AuditAction.BUDGET_RAISED,
            actor=raised_by,
            subject=key,
            reason=f"limit raised by ${by_usd} to ${raised.limit_usd}",
        )
        waiting = await self.store.list_runs(status=RunStatus.WAITING_APPROVAL)
        return [
            r.run_id for r in waiting if await self._continue_after_raise(r.run_id, key, raised_by)
        ]

    async def _continue_after_raise(self, run_id: str, key: str, raised_by: str) -> bool:
        """Journal ``BudgetRaised`` for a run waiting on ``key`` and make it pending."""
        if _budget_waited_on(await self.store.events(run_id)) != key:
            return False
        lease = await self.store.claim(self.owner, lease_for=self.lease_for, run_id=run_id)
        if lease is None:
            return False
        events = await self.store.events(run_id)  # judged again under the lease
        if _budget_waited_on(events) != key:
            await self.store.release(lease)
            return False
        waited = next(e for e in reversed(events) if isinstance(e, BudgetExhausted))
        raised = BudgetRaised(
            run_id=run_id,
            step=waited.step,
            attempt=waited.attempt,
            budget=key,
            raised_by=raised_by,
            at=self.clock.now(),
        )
        await self.store.append([raised], lease, release=True)
        self._announce(raised, ())
        return True

    async def _decide(
        self, approval_id: str, approve: bool, approver: str, comment: str | None
    ) -> ApprovalRequest:
        if self.approvals is None:
            raise ConfigurationError(f"{type(self.store).__name__} keeps no approval requests")
        roles: tuple[str, ...] = ()
        with contextlib.suppress(ConfigurationError):
            roles = await store_permissions(self.store, clock=self.clock).roles(approver)
        decided = await self.approvals.decide(
            approval_id, approve=approve, approver=approver, roles=roles, comment=comment
        )
        await self.wake(decided.run_id)
        return decided

    async def _waiting_on(
        self, run_id: str, events: Sequence[Event] | None = None
    ) -> list[ApprovalRequest]:
        """The requests a waiting run's journal asked for and has no answer to."""
        if self.approvals is None:
            return []
        if events is None:
            events = await self.store.events(run_id)
        answered = {e.step for e in events if isinstance(e, ApprovalDecided)}
        asked = {e.approval_id for e in events if isinstance(e, ApprovalRequested)}
        return [
            r
            for r in await self.approvals.of_run(run_id)
            if r.approval_id in asked and r.step not in answered
        ]

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunRecord:
        """End a run ``cancelled``, taking it from any owner (its next write is refused).

        Raises:
            RunNotFoundError: No run has this id.
            RunStateError: The run has already finished.
        """
        record = await self._record(run_id)
        if record.finished_at is not None:
            raise RunStateError(f"run {run_id} already finished ({record.status.value})")
        lease = await self.store.claim(
            self.owner, lease_for=self.lease_for, run_id=run_id, force=True
        )
        if lease is None:  # it finished between the check above and the claim
            raise RunStateError(f"run {run_id} already finished")
        finished = RunFinished(
            run_id=run_id,
            status=RunStatus.CANCELLED,
            output=None,
            error_class="cancelled",
            error_message=reason,
            at=self.clock.now(),
        )
        events = [*_answer_orphans(await self.store.events(run_id), reason, self.clock), finished]
        await self.store.append(events, lease, release=True)
        return await self._record(run_id)

    async def drive(
        self,
        lease: Lease,
        agent: AgentSpec[_OutputT],
        *,
        subscribers: Sequence[Subscriber] = (),
        journal: Sequence[Event] | None = None,
        should_stop: Any = None,
    ) -> RunResult[_OutputT]:
        """Execute the run ``lease`` holds, keeping the lease renewed; release it after.

        An unexpected exception (a bug, a broken store) is treated like a crash: the lease
        is *not* released, so it lapses and the attempt counts towards ``max_crashes``
        instead of being retried in a tight loop. An interruption (``KeyboardInterrupt``,
        cancellation) releases it cleanly.

        Raises:
            LeaseLostError: Another owner took the run; this process wrote nothing more.
        """
        events = journal if journal is not None else await self.store.events(lease.run_id)
        if journal is None and events:
            # Taken over from the store: subscribers learn the run's agent and user again.
            self._announce(events[0], subscribers)
        writer = Journal(
            store=self.store,
            lease=lease,
            replay=Replay(events),
            subscribers=(*self.subscribers, *subscribers),
        )
        run = Run(
            agent,
            writer,
            clock=self.clock,
            should_stop=should_stop,
            in_doubt=self.in_doubt,
            budgets=self.budgets,
            approvals=self.approvals,
            budget_exhausted=self.budget_exhausted,
        )
        run.calls.permissions = self.permissions
        try:
            if lease.attempts - 1 > self.max_crashes:
                result = await run.abandon(
                    "crash_loop",
                    f"the run's worker died {lease.attempts - 1} times in a row "
                    f"(max_crashes={self.max_crashes})",
                )
            else:
                async with self._renewing(lease):
                    result = await run.execute()
        except Exception:
            raise  # a crash: the lease lapses (see above)
        except BaseException:
            await self.store.release(lease)
            raise
        if not writer.released:
            await self.store.release(lease)
        return result

    async def fail(
        self,
        lease: Lease,
        error_class: str,
        message: str,
        *,
        status: RunStatus = RunStatus.FAILED,
    ) -> None:
        """End the run ``lease`` holds without running it (``failed`` by default), release it."""
        finished = RunFinished(
            run_id=lease.run_id,
            status=status,
            output=None,
            error_class=error_class,
            error_message=message,
            at=self.clock.now(),
        )
        try:
            await self.store.append([finished], lease)
        finally:
            await self.store.release(lease)
        self._announce(finished, ())

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id``."""
        return await self.store.events(run_id)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()

    @contextlib.asynccontextmanager
    async def _renewing(self, lease: Lease) -> AsyncIterator[None]:
        """Renew ``lease`` in the background; if it is lost, cancel the run."""
        renewal = _Renewal(self.store, lease, self.lease_for)
        try:
            yield
        except asyncio.CancelledError:
            if renewal.lost is not None:
                raise renewal.lost from None
            raise
        finally:
            renewal.stop()

    def _started(
        self, agent: AgentSpec[Any], task: str, user: str | None, agent_ref: str | None
    ) -> RunStarted:
        """The first event of a new run.

        Raises:
            ConfigurationError: The agent asks for approvals the store cannot keep.
        """
        if getattr(agent, "approvals", None) is not None and self.approvals is None:
            raise ConfigurationError(
                f"agent {agent.name!r} asks people to approve calls, but "
                f"{type(self.store).__name__} keeps no approval requests"
            )
        return RunStarted(
            run_id=new_run_id(),
            agent=agent.name,
            task=task,
            user=user,
            at=self.clock.now(),
            agent_ref=agent_ref,
        )

    def _announce(self, event: Event, subscribers: Sequence[Subscriber]) -> None:
        """Give a durable event that did not go through a journal to subscribers."""
        for subscriber in (*self.subscribers, *subscribers):
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber %r failed on %s", subscriber, event.kind)

    async def _record(self, run_id: str) -> RunRecord:
        record = await self.store.get_run(run_id)
        if record is None:
            raise RunNotFoundError(f"no run {run_id}")
        return record

    async def _load(self, record: RunRecord) -> AgentSpec[Any]:
        if record.agent_ref is None:
            raise ConfigurationError(
                f"run {record.run_id} has no agent reference; pass agent= to resume it"
            )
        return load_agent(record.agent_ref)


class _Renewal:
    """Renews a lease every third of its length, on the event loop's real-time clock.

    Timer callbacks rather than a task per run: starting and stopping costs about a
    microsecond, which matters at thousands of short runs per second.
    """

    def __init__(self, store: Store, lease: Lease, lease_for: timedelta) -> None:
        self.store = store
        self.lease = lease
        self.lease_for = lease_for
        self.lost: LeaseLostError | None = None
        self._loop = asyncio.get_running_loop()
        self._owner = asyncio.current_task()
        self._interval = lease_for.total_seconds() / 3
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._fire)

    def stop(self) -> None:
        """Stop renewing (the run is over)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _fire(self) -> None:
        self._timer = None
        self._task = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        failpoint("during_lease_renew")
        try:
            self.lease = await self.store.renew(self.lease, lease_for=self.lease_for)
        except LeaseLostError as exc:
            self.lost = exc
            if self._owner is not None:
                self._owner.cancel()
            return
        except Exception:  # a busy store: try again next time, the lease has slack
            logger.exception("renewing the lease of run %s failed", self.lease.run_id)
        self._timer = self._loop.call_later(self._interval, self._fire)


def _answer_orphans(journal: Sequence[Event], reason: str, clock: Clock) -> list[Event]:
    """Results for calls whose intent has none, so a cancelled journal has no orphan."""
    answered = {e.step for e in journal if isinstance(e, ToolCallFinished)}
    orphans = [e for e in journal if isinstance(e, ToolCallStarted) and e.step not in answered]
    message = f"the run was cancelled ({reason}); whether this call took effect is unknown"
    return [
        unknown_outcome(
            run_id=intent.run_id,
            step=intent.step,
            call_id=intent.call_id,
            tool=intent.tool,
            error_class="cancelled",
            message=message,
            at=clock.now(),
        )
        for intent in orphans
    ]


def _budget_waited_on(journal: Sequence[Event]) -> str | None:
    """The budget key a paused run waits on to be raised, or ``None``."""
    for event in reversed(journal):
        if isinstance(event, BudgetRaised):
            return None
        if isinstance(event, BudgetExhausted):
            return event.budget
    return None


def _answered(requests: Sequence[ApprovalRequest]) -> bool:
    """Whether a waiting run's requests exist and none still waits for a person."""
    return bool(requests) and all(r.status is not ApprovalStatus.PENDING for r in requests)


def _undecided_in_doubt(journal: Sequence[Event]) -> list[int]:
    doubted = {e.step for e in journal if isinstance(e, ToolCallInDoubt)}
    decided = {e.step for e in journal if isinstance(e, ReviewDecided)}
    return sorted(doubted - decided)


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` in a new event loop; refuse clearly inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running: the normal case for a blocking call
    else:
        coroutine.close()
        raise ConfigurationError(
            "run_sync() cannot be called from a running event loop; use `await ....run(...)`"
        )
    return asyncio.run(coroutine)
