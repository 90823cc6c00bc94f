"""Configuration values. Policies and limits are frozen values; the engine does the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from tether.errors import ConfigurationError

__all__ = ["RunLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLimits:
    """Caps on one run. Hitting a cap ends the run with the matching status.

    A *step* is one model response or one tool call: a run with four tool calls and a final
    answer takes nine steps. ``None`` disables a cap. Everything done before a cap was hit
    (history, partial output, usage) is kept in the result.
    """

    max_steps: int | None = 50
    """Model responses plus tool calls. Ends the run ``max_steps``. Default 50."""
    max_duration: timedelta | None = timedelta(minutes=10)
    """Whole-run wall-clock time, on the runtime's clock. Ends ``timed_out``. Seconds (a
    number) are accepted and converted. Default 10 min."""
    max_tokens: int | None = None
    """Input plus output tokens over all model calls. Ends ``token_limit``. Default none."""
    max_tool_calls: int | None = None
    """Tool calls requested by the model. Ends ``tool_call_limit``. Default none."""
    max_cost_usd: Decimal | None = None
    """Model-reported cost in US dollars. Ends ``budget_exceeded``; an unknown cost also
    ends the run there, since the cap could not be enforced. Numbers are converted to
    ``Decimal`` through ``str`` (``0.1`` becomes exactly ``Decimal("0.1")``). Default none."""
    max_consecutive_errors: int | None = 5
    """Tool calls in a row that failed (bad arguments, unknown tool, raised, timed out), a
    response with duplicate call ids counting as one. Ends ``failed`` with error class
    ``too_many_errors``. Default 5."""
    max_repeats: int = 2
    """How many times one call (same tool, same canonical arguments) may be repeated and
    answered from its earlier result; one more ends ``failed`` with ``loop_detected``.
    Default 2."""
    max_output_retries: int = 2
    """Revisions allowed when the final output fails ``output_type`` validation; one more
    failure ends ``failed`` with ``output_invalid``. Default 2."""
    max_parallel_tool_calls: int = 8
    """Tool calls of one response that run at the same time. Default 8."""
    max_argument_bytes: int = 256 * 1024
    """Size cap of one call's raw JSON arguments, checked before parsing. Default 256 KiB."""
    max_tool_output_chars: int = 64 * 1024
    """Tool output longer than this is truncated with an explicit marker. Default 65,536."""
    wrap_up: bool = False
    """After ``max_steps`` or ``max_tool_calls`` is hit, make one last model call without
    tools so the model can summarise; its answer becomes the output (validated against
    ``output_type`` if the agent has one). The call is one step past ``max_steps`` and is
    skipped when ``max_tokens`` or ``max_cost_usd`` leave no room. Default off."""

    def __post_init__(self) -> None:
        self._normalise_units()
        for name in (
            "max_steps",
            "max_tokens",
            "max_tool_calls",
            "max_consecutive_errors",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigurationError(f"RunLimits.{name} must be >= 1 or None, got {value}")
        for name in ("max_parallel_tool_calls", "max_argument_bytes", "max_tool_output_chars"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"RunLimits.{name} must be >= 1")
        for name in ("max_repeats", "max_output_retries"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"RunLimits.{name} must be >= 0")
        if self.max_duration is not None and self.max_duration <= timedelta(0):
            raise ConfigurationError("RunLimits.max_duration must be positive or None")
        if self.max_cost_usd is not None and self.max_cost_usd < 0:
            raise ConfigurationError("RunLimits.max_cost_usd must be >= 0 or None")

    def _normalise_units(self) -> None:
        duration: object = self.max_duration
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            try:
                object.__setattr__(self, "max_duration", timedelta(seconds=duration))
            except (ValueError, OverflowError):
                raise ConfigurationError(
                    f"RunLimits.max_duration: {duration!r} seconds is not a usable duration"
                ) from None
        elif duration is not None and not isinstance(duration, timedelta):
            raise ConfigurationError(
                f"RunLimits.max_duration must be a timedelta or seconds, got {duration!r}"
            )
        cost: object = self.max_cost_usd
        if isinstance(cost, int | float | str) and not isinstance(cost, bool):
            try:
                object.__setattr__(self, "max_cost_usd", Decimal(str(cost)))
            except ArithmeticError:
                raise ConfigurationError(
                    f"RunLimits.max_cost_usd: {cost!r} is not a number"
                ) from None
        elif cost is not None and not isinstance(cost, Decimal):
            raise ConfigurationError(f"RunLimits.max_cost_usd must be a Decimal, got {cost!r}")
        if isinstance(self.max_cost_usd, Decimal) and not self.max_cost_usd.is_finite():
            raise ConfigurationError("RunLimits.max_cost_usd must be finite")
