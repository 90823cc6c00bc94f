"""Pure checks of :class:`~tether.settings.RunLimits` against what a run has used."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tether.messages import Usage
from tether.settings import RunLimits
from tether.status import RunStatus

__all__ = ["LimitBreach", "after_model_call", "before_model_call", "before_tool_calls"]


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """Which cap was hit, the status it ends the run with, and why."""

    limit: str
    status: RunStatus
    message: str


def before_model_call(
    limits: RunLimits, *, steps: int, elapsed_s: float, usage: Usage, cost_usd: Decimal | None
) -> LimitBreach | None:
    """Return the first cap that leaves no room for another model call, or ``None``."""
    if limits.max_steps is not None and steps >= limits.max_steps:
        return LimitBreach("max_steps", RunStatus.MAX_STEPS, f"{steps} steps taken")
    if limits.max_duration is not None and elapsed_s >= limits.max_duration.total_seconds():
        return LimitBreach(
            "max_duration", RunStatus.TIMED_OUT, f"ran {elapsed_s:.3f} s of {limits.max_duration}"
        )
    return after_model_call(limits, usage=usage, cost_usd=cost_usd, strict=False)


def after_model_call(
    limits: RunLimits, *, usage: Usage, cost_usd: Decimal | None, strict: bool = True
) -> LimitBreach | None:
    """Return the token or cost cap the run has gone over, or ``None``.

    With ``strict`` (after a response) only going *over* a cap counts; before a call,
    reaching it already leaves no room.
    """
    tokens = usage.total_tokens
    if limits.max_tokens is not None and (
        tokens > limits.max_tokens or (not strict and tokens >= limits.max_tokens)
    ):
        return LimitBreach(
            "max_tokens", RunStatus.TOKEN_LIMIT, f"{tokens} tokens of {limits.max_tokens}"
        )
    if limits.max_cost_usd is None:
        return None
    if cost_usd is None:
        return LimitBreach(
            "max_cost_usd",
            RunStatus.BUDGET_EXCEEDED,
            "a model reported no price, so max_cost_usd cannot be enforced",
        )
    cap = limits.max_cost_usd
    # Before a call, reaching a positive cap leaves no room; a zero cap still admits
    # calls that cost nothing (a local model).
    if cost_usd > cap or (not strict and cost_usd == cap and cap > 0):
        return LimitBreach(
            "max_cost_usd",
            RunStatus.BUDGET_EXCEEDED,
            f"spent ${cost_usd} of ${limits.max_cost_usd}",
        )
    return None


def before_tool_calls(
    limits: RunLimits, *, steps: int, tool_calls: int, requested: int
) -> LimitBreach | None:
    """Return the cap that ``requested`` more calls would pass, or ``None``.

    A response's calls run all or none, so a cap is never overshot.
    """
    if limits.max_tool_calls is not None and tool_calls + requested > limits.max_tool_calls:
        return LimitBreach(
            "max_tool_calls",
            RunStatus.TOOL_CALL_LIMIT,
            f"{requested} more calls would pass {limits.max_tool_calls} (used {tool_calls})",
        )
    if limits.max_steps is not None and steps + requested > limits.max_steps:
        return LimitBreach(
            "max_steps",
            RunStatus.MAX_STEPS,
            f"{requested} more calls would pass {limits.max_steps} steps (used {steps})",
        )
    return None
