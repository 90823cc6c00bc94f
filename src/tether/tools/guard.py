"""The guards around one tool call: rate limit, concurrency, breaker, timeout, retries, tiers.

A tool's guards are values declared on the tool (``@tool(retry=..., breaker=...,
rate_limit=..., concurrency=..., fallbacks=...)``); the run loop knows nothing about
them. :func:`serve` applies them around one call, outermost first:

1. the rate limit (:class:`~tether.resilience.TokenBucket`: wait, or fail fast);
2. the concurrency cap (a semaphore per tool and event loop);
3. the retry policy, around
4. the circuit breaker, around
5. one attempt under the tool's ``timeout``.

What is retryable: a :class:`~tether.errors.TetherError` marked ``retryable`` (tool
authors raise ``ToolError(..., retryable=True)``), an exception of a type in the tool's
``retry_on`` (``ConnectionError`` and ``TimeoutError`` by default), and a timed-out
attempt. An ``at_most_once`` tool is retried only when the error proves the call did not
happen (``ToolError(..., executed=False)``): a lost response may hide a done payment.

While the breaker is half-open, a tool whose risk is not ``read`` runs its ``probe``
(a side-effect-free check) in place of the first real call; the real call follows only
when the probe closed the breaker. A read tool's own call is the probe.

When the tool fails for good (retries used up, breaker open, rate limited, timed out, or
a plain exception) its ``fallbacks`` serve in order, with the same arguments; the
:class:`Served` value says which one did. A non-retryable ``ToolError`` is the tool's
answer to the model, not an outage: it is returned as it is, without falling back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import weakref
from typing import Any

from tether.clock import Clock
from tether.errors import TetherError, ToolError
from tether.resilience import BreakerState
from tether.tools.feedback import describe_exception
from tether.tools.tool import Effect, Risk, RunContext, Tool

__all__ = ["Served", "attempt", "serve"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """A call's return value and the tool that produced it."""

    value: Any
    """What the function returned."""
    tool: Tool
    """The tool that served: the one called, or one of its fallbacks."""


async def serve(
    tool: Tool,
    arguments: dict[str, Any],
    context: RunContext,
    *,
    clock: Clock,
    timeout_s: float | None,
) -> Served:
    """Call ``tool`` with validated ``arguments`` through its guards and fallbacks.

    Args:
        tool: The tool the model called.
        arguments: Arguments validated against ``tool``'s schema.
        context: Injected into functions that ask for a ``RunContext``.
        clock: Times retries and breakers.
        timeout_s: Seconds one attempt may take; ``None``: no limit.

    Raises:
        TetherError: The tool and every fallback failed; the primary tool's error.
        Exception: A plain exception of a tool without retries or fallbacks, unchanged.
    """
    try:
        return Served(value=await _guarded(tool, arguments, context, clock, timeout_s), tool=tool)
    except Exception as first:
        if not tool.fallbacks or not _falls_back(first):
            raise
        for tier in tool.fallbacks:
            try:
                checked = tier.args_model.model_validate(arguments).model_dump()
                value = await _guarded(tier, checked, context, clock, _timeout_of(tier))
            except Exception:
                continue  # the next tier serves; if none does, the first error is raised
            return Served(value=value, tool=tier)
        raise


def _timeout_of(tool: Tool) -> float | None:
    return None if tool.timeout is None else tool.timeout.total_seconds()


def _falls_back(error: BaseException) -> bool:
    """Whether ``error`` means the tool is unavailable (not an answer for the model)."""
    if isinstance(error, ToolError) and error.error_class != "tool_timeout":
        return error.retryable and getattr(error, "executed", None) is not True
    return True


async def _guarded(
    tool: Tool,
    arguments: dict[str, Any],
    context: RunContext,
    clock: Clock,
    timeout_s: float | None,
) -> Any:
    if tool.rate_limit is not None:
        await tool.rate_limit.acquire()
    gate = _gate(tool)
    if gate is None:
        return await _retried(tool, arguments, context, clock, timeout_s)
    async with gate:
        return await _retried(tool, arguments, context, clock, timeout_s)


async def _retried(
    tool: Tool,
    arguments: dict[str, Any],
    context: RunContext,
    clock: Clock,
    timeout_s: float | None,
) -> Any:
    async def once() -> Any:
        try:
            value = await _broken_or_not(tool, arguments, context, timeout_s)
        except Exception as exc:
            tool.stats.record(failed=True)
            unproven = getattr(exc, "executed", None) is not False
            if isinstance(exc, TetherError) and tool.effect is Effect.AT_MOST_ONCE and unproven:
                exc.retryable = False  # it may have happened: never repeat it blindly
            raise
        tool.stats.record(failed=False)
        return value

    if tool.retry is None:
        return await once()
    return await tool.retry.call(once, clock=clock)


async def _broken_or_not(
    tool: Tool, arguments: dict[str, Any], context: RunContext, timeout_s: float | None
) -> Any:
    breaker = tool.breaker
    if breaker is None:
        return await attempt(tool, arguments, context, timeout_s)
    if breaker.state is BreakerState.HALF_OPEN and tool.risk is not Risk.READ:
        assert tool.probe is not None  # Tool checks this when it is built
        probe = tool.probe
        await breaker.call(lambda: _probe(tool, probe))
    return await breaker.call(lambda: attempt(tool, arguments, context, timeout_s))


async def _probe(tool: Tool, probe: Any) -> None:
    try:
        outcome = probe()
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as exc:
        raise _unavailable(tool, exc, retry_on=(Exception,)) from None


async def attempt(
    tool: Tool, arguments: dict[str, Any], context: RunContext, timeout_s: float | None
) -> Any:
    """One call under the timeout; failures that mean "unavailable" become typed errors.

    Raises:
        ToolError: ``tool_timeout`` when ``timeout_s`` passed, ``tool_unavailable`` for an
            exception of a type in the tool's ``retry_on``.
        Exception: Anything else the function raised, unchanged.
    """
    deadline = None if timeout_s is None else asyncio.timeout(timeout_s)
    try:
        if deadline is None:
            if tool.inline:  # a plain sync function: no coroutine to await
                return tool.function(**arguments)
            return await tool.invoke(arguments, context)
        async with deadline:
            return await tool.invoke(arguments, context)
    except TimeoutError as exc:
        if deadline is None or not deadline.expired():
            raise _unavailable(tool, exc, retry_on=tool.retry_on) from None
        raise ToolError(
            f"the call did not finish within {timeout_s:g} s",
            error_class="tool_timeout",
            retryable=True,
        ) from None
    except TetherError:
        raise
    except Exception as exc:
        raise _unavailable(tool, exc, retry_on=tool.retry_on) from None


def _unavailable(
    tool: Tool, error: Exception, *, retry_on: tuple[type[BaseException], ...]
) -> Exception:
    """``error`` as a retryable ``tool_unavailable`` error if its type is in ``retry_on``."""
    if isinstance(error, retry_on):
        return ToolError(describe_exception(error), error_class="tool_unavailable", retryable=True)
    return error


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _gate(tool: Tool) -> asyncio.Semaphore | None:
    """The tool's concurrency semaphore on the running event loop, or ``None``."""
    if tool.concurrency is None:
        return None
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    gate = gates.get(id(tool.stats))
    if gate is None:
        gate = gates[id(tool.stats)] = asyncio.Semaphore(tool.concurrency)
    return gate
