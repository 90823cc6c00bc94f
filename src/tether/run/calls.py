"""One response's tool calls: validate each, answer repeats, run the rest concurrently.

Every call gets exactly one :class:`CallRecord`, in the order the model sent them, so
the history never holds a call without a result (a call waiting for a person's approval
gets its result when the run continues). How a validated call is executed
(live, from the journal, or not at all when it is in doubt) is the caller's business,
through :class:`CallHooks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tether.messages import ToolCall
from tether.run.state import RunState
from tether.settings import RunLimits
from tether.tools import Tool, ToolOutcome, Validated, validate_call

__all__ = ["CallHooks", "CallRecord", "run_calls", "settle_repeats"]


@dataclass(slots=True)
class CallRecord:
    """The result of one call of a response."""

    call: ToolCall
    step: int
    outcome: ToolOutcome
    executed: bool = False
    repeated: bool = False
    in_doubt: bool = False
    """The call may have run and its outcome is unknown; a person must decide."""
    waiting: bool = False
    """The call waits for a person's approval: no call of its batch runs yet."""
    digest: str | None = None
    idempotency_key: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the call has its outcome (run, refused, or answered as a repeat)."""
        return self.executed or bool(self.outcome.content)


class CallHooks(Protocol):
    """What the run does around the execution of validated calls."""

    async def admit(self, record: CallRecord, checked: Validated) -> None:
        """Decide whether ``checked`` may run (called for each call, before any intent).

        Leave ``record`` as it is to let the call run, give it its outcome to refuse it,
        or mark it ``waiting`` for a person.
        """
        ...

    async def intend(self, record: CallRecord, checked: Validated) -> None:
        """Record the intent to run ``checked`` (called for each call, before any runs)."""
        ...

    async def intents_recorded(self) -> None:
        """All intents are recorded; make them durable before anything executes."""
        ...

    async def execute(self, record: CallRecord, checked: Validated) -> None:
        """Fill ``record`` with the outcome of ``checked``."""
        ...


async def run_calls(
    calls: Sequence[ToolCall],
    *,
    tools: Mapping[str, Tool],
    state: RunState,
    limits: RunLimits,
    hooks: CallHooks,
    records: list[CallRecord],
) -> None:
    """Validate and execute ``calls``, appending one record per call to ``records``.

    The caller owns ``records``, so if the run's deadline cancels this coroutine it still
    knows which calls finished.
    """
    pending: list[tuple[CallRecord, Validated]] = []
    first_in_batch: dict[str, CallRecord] = {}
    for call in calls:
        state.steps += 1
        state.tool_calls += 1
        checked = validate_call(call, tools, max_argument_bytes=limits.max_argument_bytes)
        if not isinstance(checked, Validated):
            error = ToolOutcome(
                content=checked.content, is_error=True, error_class=checked.error_class
            )
            records.append(CallRecord(call, state.steps, error))
            continue
        record = CallRecord(call, state.steps, ToolOutcome(content=""), digest=checked.digest)
        records.append(record)
        earlier = state.results_by_digest.get(checked.digest)
        if earlier is not None or checked.digest in first_in_batch:
            record.repeated = True
            state.repeats[checked.digest] = state.repeats.get(checked.digest, 0) + 1
            if earlier is not None:
                record.outcome = _repeat_outcome(ToolOutcome(content=earlier[1]), earlier[0])
            continue
        first_in_batch[checked.digest] = record
        pending.append((record, checked))

    for record, checked in pending:
        await hooks.admit(record, checked)
    if any(record.waiting for record, _ in pending):
        pending = []  # the whole batch waits for people: nothing runs before they answer
    else:
        pending = [(record, checked) for record, checked in pending if not record.finished]
    for record, checked in pending:
        await hooks.intend(record, checked)
    if pending:
        await hooks.intents_recorded()
    await _execute_all(pending, hooks, limits)

    settle_repeats(records)
    for record in records:
        if record.executed and not record.outcome.is_error and record.digest is not None:
            state.results_by_digest[record.digest] = (record.step, record.outcome.content)


async def _execute_all(
    pending: Sequence[tuple[CallRecord, Validated]], hooks: CallHooks, limits: RunLimits
) -> None:
    if not pending:
        return
    if len(pending) == 1:
        await hooks.execute(*pending[0])
        return
    gate = asyncio.Semaphore(limits.max_parallel_tool_calls)

    async def gated(record: CallRecord, checked: Validated) -> None:
        async with gate:
            await hooks.execute(record, checked)

    await asyncio.gather(*(gated(record, checked) for record, checked in pending))


def settle_repeats(records: Sequence[CallRecord]) -> None:
    """Give each repeat in a batch its original's outcome, once that finished (or was refused).

    Safe to call on a batch cut short: repeats of unfinished originals stay unfinished.
    """
    originals = {r.digest: r for r in records if r.finished and not r.repeated}
    for record in records:
        original = originals.get(record.digest)
        if record.repeated and not record.finished and original is not None:
            record.outcome = _repeat_outcome(original.outcome, original.step)


def _repeat_outcome(earlier: ToolOutcome, step: int) -> ToolOutcome:
    note = (
        f"\n[tether: identical to the call at step {step}; not run again. "
        "Repeating it will not change the result.]"
    )
    return ToolOutcome(
        content=earlier.content + note, is_error=earlier.is_error, error_class=earlier.error_class
    )
