"""Executing validated tool calls durably: intent first, then the effect, then the result.

Each call's intent (``ToolCallStarted``, with its idempotency key and declared effect) is
committed before the function runs. When a resumed run reaches a call:

- a recorded result is used as is; the function does not run;
- an intent without a result is the crash window, resolved by the tool's effect:
  ``read`` runs again, ``idempotent`` runs again with the same idempotency key, and
  ``at_most_once`` is marked *in doubt* (never run again automatically) unless a person
  already decided (``ReviewDecided``: retry, skip or a recorded result).

Before any intent, each new call is admitted (:meth:`DurableCalls.admit`):

- with :attr:`DurableCalls.permissions` set, it is checked with the run's user; a denied
  call gets no intent, never runs, and is answered with a ``permission_denied`` error;
- with an :attr:`DurableCalls.approval_policy` that asks for it, a person must approve
  it first: the request is stored and journaled (``ApprovalRequested``) and the call is
  marked waiting, so its whole batch waits and the run pauses in ``waiting_approval``.
  When the run continues after the answer (``ApprovalDecided``), an approval is spent
  (single use, bound to the exact arguments) just before the intent; a denial or an
  expiry is answered with ``approval_denied`` / ``approval_expired`` and never runs.

A call the journal answered without an intent (a recorded refusal) is answered from the
journal again and never re-checked; a call with a recorded intent was admitted before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic_core import to_jsonable_python

from tether.clock import Clock
from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    CheckpointTaken,
    ReviewDecided,
    ToolCallFinished,
    ToolCallStarted,
)
from tether.failpoints import failpoint
from tether.governance.approvals import ApprovalPolicy, ApprovalRequest, Approvals, ApprovalStatus
from tether.governance.permissions import Permissions
from tether.ids import idempotency_key
from tether.run.calls import CallRecord
from tether.run.journal import Journal
from tether.run.state import RunState
from tether.settings import RunLimits
from tether.tools import Effect, Risk, RunContext, ToolOutcome, Validated, error_result, execute

__all__ = ["DurableCalls", "approval_decided", "unknown_outcome"]


class DurableCalls:
    """The :class:`~tether.run.calls.CallHooks` of a journaled run."""

    def __init__(
        self,
        *,
        journal: Journal,
        state: RunState,
        limits: RunLimits,
        clock: Clock,
        permissions: Permissions | None = None,
        approval_policy: ApprovalPolicy | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        self.permissions = permissions
        """Who may call which tool; ``None`` (default): every validated call may run."""
        self.approval_policy = approval_policy
        """Which calls wait for a person; ``None`` (default): none."""
        self.approvals = approvals
        """Where approval requests are kept (required with an :attr:`approval_policy`)."""
        self.waiting_for: list[str] = []
        """Approval ids the current batch waits for (the loop clears it per batch)."""
        self.confidence: float | None = None
        """The confidence the current batch's response reported (the loop sets it)."""
        self.journal = journal
        self.state = state
        self.limits = limits
        self.clock = clock
        self.now = clock.now
        self.in_flight: dict[str, int] = {}
        """Call id -> step of calls whose intent is recorded and result is not."""

    async def admit(self, record: CallRecord, checked: Validated) -> None:
        """Decide whether ``checked`` may run: permissions first, then approval.

        A refused call (now, or in the journal) gets its outcome and will get no intent; a
        call that needs an answer from a person is marked ``waiting``.
        """
        replay, step = self.journal.replay, record.step
        asked = replay.approval_requests.get(step)
        decided = replay.approval_decisions.get(step)
        replay.consume(*(e for e in (asked, decided) if e is not None))
        if step in replay.intents:
            return  # admitted before its intent was recorded
        result = replay.results.get(step)
        if result is not None:  # refused before: answer it the same way, check nothing
            replay.consume(result)
            record.outcome = ToolOutcome(
                content=result.content, is_error=result.is_error, error_class=result.error_class
            )
            record.executed = result.executed
            return
        if self.permissions is not None and not await self._permitted(record, checked):
            return
        if self.approval_policy is not None:
            await self._approve(record, checked, asked, decided)

    async def intend(self, record: CallRecord, checked: Validated) -> None:
        """Queue the intent of ``checked`` (with its idempotency key and effect)."""
        failpoint("before_intent")
        self.in_flight[record.call.id] = record.step
        record.idempotency_key = idempotency_key(self.state.run_id, checked.digest)
        risk = checked.tool.risk
        if risk is not Risk.READ:
            self.journal.emit(
                CheckpointTaken(
                    run_id=self.state.run_id,
                    step=record.step,
                    call_id=record.call.id,
                    tool=checked.tool.name,
                    risk=risk.value,
                    at=self.now(),
                )
            )
        self.journal.emit(
            ToolCallStarted(
                run_id=self.state.run_id,
                step=record.step,
                call_id=record.call.id,
                tool=checked.tool.name,
                arguments=checked.arguments,
                idempotency_key=record.idempotency_key,
                effect=checked.tool.effect.value,
                at=self.now(),
            )
        )

    async def intents_recorded(self) -> None:
        """Commit the model's response and the intents before any call runs.

        From here on a crash leaves them in the journal: the response is never requested
        (so never billed) again.
        """
        await self.journal.flush()
        failpoint("after_intent_before_call")

    async def execute(self, record: CallRecord, checked: Validated) -> None:
        """Fill ``record`` from the journal, a review decision, or a live call."""
        replay, step = self.journal.replay, record.step
        decision = replay.decisions.get(step)
        if decision is not None:
            replay.consume(decision)
            doubted = replay.in_doubt.get(step)
            if doubted is not None:
                replay.consume(doubted)
        elif step in replay.in_doubt:
            record.in_doubt = True  # undecided: the loop journals (or replays) the doubt
            return
        result = replay.results.get(step)
        if result is not None:
            record.outcome = ToolOutcome(
                content=result.content,
                is_error=result.is_error,
                error_class=result.error_class,
                tier=result.tier,
                dedupe_of=result.dedupe_of,
            )
            record.executed = result.executed
            return
        if step in replay.intents:
            if decision is not None:
                if decision.decision != "retry":
                    _apply_decision(record, decision)
                    return
            elif checked.tool.effect is Effect.AT_MOST_ONCE:
                record.in_doubt = True
                return
        await self._run_live(record, checked)

    async def _permitted(self, record: CallRecord, checked: Validated) -> bool:
        """Check a new call against the permissions; answer it if it is denied."""
        assert self.permissions is not None
        self.journal.replay.forbid_live(f"check permissions of {checked.tool.name!r}")
        decision = await self.permissions.check(
            self.state.user,
            checked.tool.name,
            checked.arguments,
            run_id=self.state.run_id,
            step=record.step,
        )
        if decision.allowed:
            return True
        message = (
            f"you are not permitted to make this call: {decision.reason}. "
            "Permissions are granted by people only; try another way or explain why "
            "you cannot do it."
        )
        _refuse(record, "permission_denied", message)
        return False

    async def _approve(
        self,
        record: CallRecord,
        checked: Validated,
        asked: ApprovalRequested | None,
        decided: ApprovalDecided | None,
    ) -> None:
        """Ask a person, wait for them, or spend their answer (see the module docstring)."""
        policy, store = self.approval_policy, self.approvals
        assert policy is not None and store is not None
        tool, arguments = checked.tool, checked.arguments
        verdict = policy.decide(tool, arguments, confidence=_usable(self.confidence))
        if asked is None and not verdict.ask:
            return
        replay, state = self.journal.replay, self.state
        if decided is None:
            if asked is not None:  # continued before anyone answered: wait on
                record.waiting = True
                self.waiting_for.append(asked.approval_id)
                return
            replay.forbid_live(f"ask for approval of {tool.name!r} at step {record.step}")
            made = await store.request(
                state.run_id,
                record.step,
                tool.name,
                arguments,
                ttl=policy.ttl,
                reasons=verdict.reasons,
                approver_role=policy.approver_role,
            )
            self.journal.emit(_requested(made, record))
            if made.status is ApprovalStatus.PENDING:
                record.waiting = True
                self.waiting_for.append(made.approval_id)
                return
            # Answered before its request was journaled (a crash came in between).
            decided = approval_decided(made, record.call.id, self.now())
            self.journal.emit(decided)
        if decided.outcome == "approved":
            replay.forbid_live(f"spend the approval of {tool.name!r} at step {record.step}")
            spent = await store.consume(
                state.run_id, record.step, tool.name, arguments, resumed=True
            )
            if not spent.allowed:
                error_class = "approval_expired" if spent.expired else "approval_invalid"
                _refuse(record, error_class, f"this call was not run: {spent.reason}")
            return
        who = decided.decided_by or "a person"
        if decided.outcome == "expired":
            message = (
                f"nobody approved this call before its approval request "
                f"{decided.approval_id} expired, so it was not run"
            )
            _refuse(record, "approval_expired", message)
            return
        comment = f": {decided.comment}" if decided.comment else ""
        message = (
            f"{who} denied this call{comment}. It was not run. Do not make it again; "
            "choose another way, or tell the user it was refused."
        )
        _refuse(record, "approval_denied", message)

    async def _run_live(self, record: CallRecord, checked: Validated) -> None:
        self.journal.replay.forbid_live(f"run tool {checked.tool.name!r} at step {record.step}")
        timeout = checked.tool.timeout
        context = RunContext(
            run_id=self.state.run_id,
            agent=self.state.agent,
            user=self.state.user,
            step=record.step,
            call_id=record.call.id,
            idempotency_key=record.idempotency_key
            or idempotency_key(self.state.run_id, checked.digest),
        )
        dedupe = checked.tool.dedupe
        namespace = key = ""
        if dedupe is not None:
            namespace = f"tool:{checked.tool.name}"
            key = dedupe.key_of(checked.tool.name, to_jsonable_python(checked.arguments))
            kept = await self.journal.store.recall(namespace, key)
            if kept is not None:
                record.outcome = ToolOutcome(content=kept.value, dedupe_of=kept.source)
                record.executed = False
                return
        record.outcome = await execute(
            checked,
            context,
            timeout_s=None if timeout is None else timeout.total_seconds(),
            max_output_chars=self.limits.max_tool_output_chars,
            clock=self.clock,
        )
        record.executed = True
        if dedupe is not None and not record.outcome.is_error:
            await self.journal.store.remember(
                namespace, key, record.outcome.content, ttl=dedupe.ttl, source=self.state.run_id
            )
        failpoint("after_call_before_result")


def _usable(confidence: object) -> float | None:
    """A reported confidence as the policy takes it: ``None`` or a number in [0, 1].

    Anything else a model sent counts as 0, the least confident.
    """
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return 0.0
    return float(confidence) if 0.0 <= confidence <= 1.0 else 0.0


def _refuse(record: CallRecord, error_class: str, message: str) -> None:
    """Answer a call that will not run with an error the model sees."""
    content = error_result(error_class, message, tool=record.call.name)
    record.outcome = ToolOutcome(content=content, is_error=True, error_class=error_class)
    record.executed = False


def _requested(made: ApprovalRequest, record: CallRecord) -> ApprovalRequested:
    return ApprovalRequested(
        run_id=made.run_id,
        step=made.step,
        call_id=record.call.id,
        tool=made.tool,
        approval_id=made.approval_id,
        reasons=made.reasons,
        expires_at=made.expires_at,
        at=made.requested_at,
    )


def approval_decided(request: ApprovalRequest, call_id: str, at: datetime) -> ApprovalDecided:
    """The journal entry of a request a person answered (or that expired).

    A request already ``used`` was approved (it was spent by a call that crashed before
    its intent was recorded). Raises ``ValueError`` for a request still pending.
    """
    outcomes: dict[ApprovalStatus, Literal["approved", "denied", "expired"]] = {
        ApprovalStatus.APPROVED: "approved",
        ApprovalStatus.USED: "approved",
        ApprovalStatus.DENIED: "denied",
        ApprovalStatus.EXPIRED: "expired",
    }
    outcome = outcomes.get(request.status)
    if outcome is None:
        raise ValueError(f"approval {request.approval_id} is still {request.status.value}")
    return ApprovalDecided(
        run_id=request.run_id,
        step=request.step,
        call_id=call_id,
        approval_id=request.approval_id,
        outcome=outcome,
        decided_by=request.decided_by,
        comment=request.comment,
        at=at,
    )


def _apply_decision(record: CallRecord, decision: ReviewDecided) -> None:
    record.executed = True
    if decision.decision == "result":
        record.outcome = ToolOutcome(content=decision.result or "")
        return
    message = (
        "this call was interrupted by a crash and a person chose to skip it; "
        "whether it took effect is unknown"
    )
    content = error_result("outcome_unknown", message, tool=record.call.name)
    record.outcome = ToolOutcome(content=content, is_error=True, error_class="outcome_unknown")


def unknown_outcome(
    *,
    run_id: str,
    step: int,
    call_id: str,
    tool: str,
    error_class: str,
    message: str,
    at: datetime,
) -> ToolCallFinished:
    """The result of a started call whose outcome nobody knows (so no call is orphaned).

    Used when a run ends without the call's result: abandoned after a crash loop, ended
    with the call in doubt, or cancelled.
    """
    return ToolCallFinished(
        run_id=run_id,
        step=step,
        call_id=call_id,
        tool=tool,
        content=error_result(error_class, message, tool=tool),
        is_error=True,
        error_class=error_class,
        executed=True,
        repeated=False,
        at=at,
    )
