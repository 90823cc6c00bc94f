"""Executing validated tool calls durably: intent first, then the effect, then the result.

Each call's intent (``ToolCallStarted``, with its idempotency key and declared effect) is
committed before the function runs. When a resumed run reaches a call:

- a recorded result is used as is; the function does not run;
- an intent without a result is the crash window, resolved by the tool's effect:
  ``read`` runs again, ``idempotent`` runs again with the same idempotency key, and
  ``at_most_once`` is marked *in doubt* (never run again automatically) unless a person
  already decided (``ReviewDecided``: retry, skip or a recorded result).

With :attr:`DurableCalls.permissions` set, each new call is checked with the run's user
before its intent is recorded: a denied call gets no intent, is never executed, and is
answered with a ``permission_denied`` error result. A call the journal answered without
an intent (a recorded denial) is answered from the journal again and never re-checked.
"""

from __future__ import annotations

from datetime import datetime

from pydantic_core import to_jsonable_python

from tether.clock import Clock
from tether.events import CheckpointTaken, ReviewDecided, ToolCallFinished, ToolCallStarted
from tether.failpoints import failpoint
from tether.governance.permissions import Permissions
from tether.ids import idempotency_key
from tether.run.calls import CallRecord
from tether.run.journal import Journal
from tether.run.state import RunState
from tether.settings import RunLimits
from tether.tools import Effect, Risk, RunContext, ToolOutcome, Validated, error_result, execute

__all__ = ["DurableCalls"]


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
    ) -> None:
        self.permissions = permissions
        """Who may call which tool; ``None`` (default): every validated call may run."""
        self.journal = journal
        self.state = state
        self.limits = limits
        self.clock = clock
        self.now = clock.now
        self.in_flight: dict[str, int] = {}
        """Call id -> step of calls whose intent is recorded and result is not."""

    async def intend(self, record: CallRecord, checked: Validated) -> None:
        """Queue the intent of ``checked`` (with its idempotency key and effect).

        A call that is refused (now, or in the journal) gets its outcome and no intent.
        """
        replay = self.journal.replay
        if record.step in replay.results and record.step not in replay.intents:
            return  # answered without running (a recorded denial): execute reads the journal
        if self.permissions is not None and not await self._permitted(record, checked):
            return
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
        if record.finished:
            return  # refused before its intent was recorded
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
        content = error_result("permission_denied", message, tool=checked.tool.name)
        record.outcome = ToolOutcome(
            content=content, is_error=True, error_class="permission_denied"
        )
        record.executed = False
        return False

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
