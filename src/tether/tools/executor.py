"""Execute one validated tool call: timeout, error capture, result validation, truncation.

Nothing a tool does can crash the run: an exception, a timeout or an invalid return value
becomes a :class:`ToolOutcome` with ``is_error=True`` and a structured message for the
model. ``asyncio.CancelledError`` is re-raised, because it means the run itself is being
stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from tether.clock import Clock, SystemClock
from tether.errors import TetherError
from tether.tools.feedback import describe_exception, error_result, truncate_output
from tether.tools.guard import attempt, serve
from tether.tools.tool import RunContext, Tool
from tether.tools.validation import Validated

__all__ = ["ToolOutcome", "execute"]

_SYSTEM = SystemClock()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """The result of one executed call, ready to send to the model."""

    content: str
    """Result text: the value itself for ``str``, JSON otherwise, or a structured error."""
    is_error: bool = False
    """Whether the call failed."""
    error_class: str | None = None
    """``tool_error``, ``tool_timeout``, ``invalid_result`` or the raised error's class."""
    tier: str | None = None
    """The fallback tool that served the call, or ``None`` when the tool itself did."""
    dedupe_of: str | None = None
    """The run whose recorded result was reused (:class:`~tether.tools.Dedupe`), if any."""


async def execute(
    call: Validated,
    context: RunContext,
    *,
    timeout_s: float | None,
    max_output_chars: int,
    clock: Clock | None = None,
) -> ToolOutcome:
    """Run ``call`` through its tool's guards (:mod:`tether.tools.guard`) and capture it.

    Args:
        call: A call that passed :func:`~tether.tools.validation.validate_call`.
        context: Injected into the function if it asks for a ``RunContext``.
        timeout_s: Seconds one attempt may take; the run's own deadline applies besides.
        max_output_chars: Longer results are truncated with an explicit marker.
        clock: Times retries, breakers and rate limits. Default: the system clock.
    """
    tool = call.tool
    try:
        if tool.unguarded:  # the common case, kept to one coroutine
            value = await attempt(tool, call.arguments, context, timeout_s)
            tool.stats.record(failed=False)
            return _success(value, tool, max_output_chars)
        served = await serve(
            tool, call.arguments, context, clock=clock or _SYSTEM, timeout_s=timeout_s
        )
    except TetherError as exc:
        if tool.unguarded:
            tool.stats.record(failed=True)
        return _failure(exc.error_class, exc.message, tool.name, retryable=exc.retryable)
    except Exception as exc:
        if tool.unguarded:
            tool.stats.record(failed=True)
        return _failure("tool_error", describe_exception(exc), tool.name)
    outcome = _success(served.value, served.tool, max_output_chars)
    if served.tool is tool:
        return outcome
    note = f"\n[tether: served by the fallback tool {served.tool.name!r}]"
    return dataclasses.replace(outcome, content=outcome.content + note, tier=served.tool.name)


def _success(value: Any, tool: Tool, max_output_chars: int) -> ToolOutcome:
    adapter = tool.result_adapter
    try:
        if adapter is not None:
            value = adapter.validate_python(value)
        text = value if isinstance(value, str) else to_json(value).decode()
    except (ValidationError, ValueError, TypeError) as exc:
        summary = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _failure(
            "invalid_result",
            f"the tool returned a value that does not match its declared type: {summary}",
            tool.name,
        )
    return ToolOutcome(content=truncate_output(text, max_output_chars))


def _failure(error_class: str, message: str, tool: str, **details: Any) -> ToolOutcome:
    content = error_result(error_class, message, tool=tool, **details)
    return ToolOutcome(content=content, is_error=True, error_class=error_class)
