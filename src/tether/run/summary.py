"""A run's result read from its journal alone, without its agent."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tether.errors import RunStateError
from tether.events import Event, ModelResponded, RunFinished, RunStarted, ToolCallFinished
from tether.messages import Usage, add_costs
from tether.run.outcome import RunError, RunResult

__all__ = ["result_from_journal"]


def result_from_journal(journal: Sequence[Event]) -> RunResult[Any]:
    """Build the result of a finished run from its events.

    ``output`` is the recorded text and ``messages`` is empty: rebuilding the conversation
    needs the agent (see ``Tether.replay``).

    Raises:
        RunStateError: The journal has no ``run_finished`` event.
    """
    started = journal[0] if journal else None
    finished = journal[-1] if journal else None
    if not isinstance(started, RunStarted) or not isinstance(finished, RunFinished):
        raise RunStateError("the run has not finished")
    usage = Usage()
    cost: Decimal | None = Decimal(0)
    steps = 0
    tool_calls = 0
    degraded = False
    for event in journal:
        if isinstance(event, ModelResponded):
            usage = usage + event.response.usage
            degraded = degraded or event.response.degraded
            price = event.response.cost_usd
            cost = add_costs(cost, price)
            steps = max(steps, event.step)
        elif isinstance(event, ToolCallFinished):
            steps = max(steps, event.step)
            degraded = degraded or event.tier is not None
            tool_calls += event.error_class != "limit_reached"
    error = (
        None
        if finished.error_class is None
        else RunError(error_class=finished.error_class, message=finished.error_message or "")
    )
    return RunResult(
        run_id=started.run_id,
        agent=started.agent,
        status=finished.status,
        output=finished.output,
        error=error,
        steps=steps,
        tool_calls=tool_calls,
        usage=usage,
        cost_usd=cost,
        degraded=degraded,
        started_at=started.at,
        finished_at=finished.at,
        messages=(),
    )
