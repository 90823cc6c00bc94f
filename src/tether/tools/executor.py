"""Execute one validated tool call: timeout, error capture, result validation, truncation.

Nothing a tool does can crash the run: an exception, a timeout or an invalid return value
becomes a :class:`ToolOutcome` with ``is_error=True`` and a structured message for the
model. ``asyncio.CancelledError`` is re-raised, because it means the run itself is being
stopped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from tether.errors import TetherError
from tether.tools.feedback import error_result, truncate_output
from tether.tools.tool import RunContext
from tether.tools.validation import Validated

__all__ = ["ToolOutcome", "execute"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """The result of one executed call, ready to send to the model."""

    content: str
    """Result text: the value itself for ``str``, JSON otherwise, or a structured error."""
    is_error: bool = False
    """Whether the call failed."""
    error_class: str | None = None
    """``tool_error``, ``tool_timeout``, ``invalid_result`` or the raised error's class."""


async def execute(
    call: Validated, context: RunContext, *, timeout_s: float | None, max_output_chars: int
) -> ToolOutcome:
    """Run ``call`` within ``timeout_s`` seconds (``None``: no limit) and capture the outcome.

    Args:
        call: A call that passed :func:`~tether.tools.validation.validate_call`.
        context: Injected into the function if it asks for a ``RunContext``.
        timeout_s: The tool's timeout in seconds; the run's own deadline applies besides.
        max_output_chars: Longer results are truncated with an explicit marker.
    """
    tool = call.tool
    deadline = None if timeout_s is None else asyncio.timeout(timeout_s)
    try:
        if deadline is None:
            value = await tool.invoke(call.arguments, context)
        else:
            async with deadline:
                value = await tool.invoke(call.arguments, context)
    except TimeoutError as exc:
        if deadline is not None and deadline.expired():
            message = f"the call did not finish within {timeout_s:g} s"
            return _failure("tool_timeout", message, tool.name)
        return _failure("tool_error", f"TimeoutError: {exc}", tool.name)
    except TetherError as exc:
        return _failure(exc.error_class, exc.message, tool.name, retryable=exc.retryable)
    except Exception as exc:
        return _failure("tool_error", f"{type(exc).__name__}: {exc}", tool.name)
    return _success(value, call, max_output_chars)


def _success(value: Any, call: Validated, max_output_chars: int) -> ToolOutcome:
    adapter = call.tool.result_adapter
    try:
        if adapter is not None:
            value = adapter.validate_python(value)
        text = value if isinstance(value, str) else to_json(value).decode()
    except (ValidationError, ValueError, TypeError) as exc:
        summary = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _failure(
            "invalid_result",
            f"the tool returned a value that does not match its declared type: {summary}",
            call.tool.name,
        )
    return ToolOutcome(content=truncate_output(text, max_output_chars))


def _failure(error_class: str, message: str, tool: str, **details: Any) -> ToolOutcome:
    content = error_result(error_class, message, tool=tool, **details)
    return ToolOutcome(content=content, is_error=True, error_class=error_class)
