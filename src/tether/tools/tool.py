"""Tools: plain functions with a validated signature and declared risk and effect.

``@tool`` reads the type hints and the Google-style docstring of a function and builds:

- a JSON schema for the model (descriptions from the ``Args:`` section),
- a pydantic model that validates the model's arguments (extra fields are refused), and
- a validator for the declared return type.

A tool that wants to know about its run declares a parameter annotated
:class:`RunContext`; it is injected and never appears in the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from tether.errors import ConfigurationError
from tether.ids import call_digest, canonical_json
from tether.messages import ToolDefinition
from tether.resilience import BreakerSnapshot, CircuitBreaker, RetryPolicy, TokenBucket

__all__ = [
    "HEALTH_WINDOW",
    "Compensation",
    "Dedupe",
    "Effect",
    "Risk",
    "RunContext",
    "Tool",
    "ToolHealth",
    "ToolStats",
    "tool",
]

_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class Risk(StrEnum):
    """How much harm a tool can do. Drives checkpoints and approval policies."""

    READ = "read"
    """Reads only."""
    WRITE = "write"
    """Changes state this system owns."""
    EXTERNAL = "external"
    """Acts on the outside world (sends, pays, posts)."""
    IRREVERSIBLE = "irreversible"
    """Cannot be undone."""


class Effect(StrEnum):
    """What is safe after a crash between starting a call and recording its result."""

    READ = "read"
    """No side effect: always safe to run again."""
    IDEMPOTENT = "idempotent"
    """Safe to run again with the same idempotency key (the tool passes it on)."""
    AT_MOST_ONCE = "at_most_once"
    """Never run again automatically; a person decides."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """What a tool may know about the run that calls it. Declare a parameter of this type."""

    run_id: str
    """Id of the run making the call."""
    agent: str
    """Name of the agent."""
    user: str | None
    """User the run acts for, if any."""
    step: int
    """Step number of this call within the run (1-based)."""
    call_id: str
    """The model's id for this call."""
    idempotency_key: str
    """sha256 of the run id and the call digest (itself sha256 of the tool name and the
    canonical arguments): stable across retries and resumes of the same call. Pass it to
    remote APIs that deduplicate."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Compensation:
    """What a tool's ``compensate`` function is given to undo one completed call."""

    run_id: str
    """Id of the run whose call is undone."""
    step: int
    """Step of the call within that run."""
    arguments: dict[str, Any]
    """The call's validated arguments (as JSON values)."""
    result: Any
    """What the call returned, decoded from the journal (JSON values; the text itself
    when it was not JSON)."""
    idempotency_key: str
    """A key for the compensation, stable across repeats of the same undo (the call's
    idempotency key with ``:undo`` appended): pass it to APIs that deduplicate."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dedupe:
    """Cross-run idempotency: a repeated call inside ``ttl``, from any run, is not run.

    The first successful call's result is kept in the store under the tool's name and the
    call's key; a later call with the same key gets that result back, and its journal
    entry names the run that made the call (``ToolCallFinished.dedupe_of``).
    """

    ttl: timedelta
    """How long a result is reused."""
    key: Callable[[dict[str, Any]], Any] | None = None
    """Maps the validated arguments (JSON values) to what identifies the call, for example
    without a nonce or a timestamp: ``lambda a: {k: v for k, v in a.items() if k != "nonce"}``.
    Default: all the arguments."""

    def key_of(self, tool: str, arguments: dict[str, Any]) -> str:
        """The store key of a call: sha256 of the tool name and the canonical key value."""
        value = arguments if self.key is None else self.key(arguments)
        return call_digest(tool, canonical_json(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A callable the model may use. Build one with :func:`tool`.

    Calling a ``Tool`` directly calls the wrapped function unchanged.
    """

    name: str
    """Name the model uses. Letters, digits, ``_ . -``; at most 64 characters."""
    description: str
    """What the tool does, shown to the model."""
    function: Callable[..., Any]
    """The wrapped function (sync or async)."""
    args_model: type[BaseModel]
    """Pydantic model validating the arguments (extra fields refused)."""
    result_adapter: TypeAdapter[Any] | None
    """Validator of the declared return type, or ``None`` when it is not declared."""
    context_param: str | None
    """Name of the :class:`RunContext` parameter, if the function asks for one."""
    risk: Risk
    """Declared risk. Default ``read``."""
    effect: Effect
    """Declared effect semantics after a crash."""
    timeout: timedelta | None
    """Time one call may take; ``None`` means only the run's deadline applies."""
    definition: ToolDefinition
    """The name, description and JSON schema sent to models (built once)."""
    compensate: Callable[[Compensation], Any] | None = None
    """Undoes one completed call (sync or async), for ``tether undo``; ``None`` when the
    tool has nothing to undo or cannot be undone. It must be idempotent: an undo that was
    interrupted runs it again."""
    retry: RetryPolicy | None = None
    """Retries retryable failures of a call; ``None``: one attempt. See
    :mod:`tether.tools.guard` for what is retryable."""
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    """Exception types (besides tether errors marked retryable) worth another attempt."""
    breaker: CircuitBreaker | None = None
    """Stops calling the tool while it keeps failing; ``None``: no breaker."""
    probe: Callable[[], Any] | None = None
    """A side-effect-free health check (sync or async) run instead of a real call when the
    breaker is half-open. Required for a breaker on a tool whose risk is not ``read``."""
    rate_limit: TokenBucket | None = None
    """Calls per second allowed (waiting or failing fast per the bucket); ``None``: no cap."""
    concurrency: int | None = None
    """At most this many calls of the tool at once, across runs of the process; ``None``:
    no cap."""
    dedupe: Dedupe | None = None
    """Reuse a recent identical call's result across runs instead of calling again;
    ``None``: every call runs."""
    fallbacks: tuple[Tool, ...] = ()
    """Tools that serve in order, with the same arguments, when this one fails or its
    breaker is open. A result served by one marks the run ``degraded``."""
    stats: ToolStats = field(default_factory=lambda: ToolStats(), compare=False, repr=False)
    """Recent outcomes of the tool in this process (see :meth:`health`)."""
    is_async: bool = field(init=False)
    """Whether the function is a coroutine function (computed)."""
    unguarded: bool = field(init=False)
    """Whether no guard applies: no retry, breaker, rate limit, concurrency cap or
    fallback (computed)."""
    inline: bool = field(init=False)
    """Whether a call is a plain synchronous call on the event loop: a sync function
    without a timeout or a ``RunContext`` parameter (computed)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.function))
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))
        plain = not self.is_async and self.timeout is None and self.context_param is None
        object.__setattr__(self, "inline", plain)
        guards = (self.retry, self.breaker, self.rate_limit, self.concurrency)
        object.__setattr__(self, "unguarded", all(g is None for g in guards) and not self.fallbacks)
        if self.breaker is not None and self.risk is not Risk.READ and self.probe is None:
            raise ConfigurationError(
                f"tool {self.name!r}: a breaker on a {self.risk.value!r} tool needs a "
                "side-effect-free probe= to test the tool when half-open"
            )
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigurationError(f"tool {self.name!r}: concurrency must be at least 1")
        for fallback in self.fallbacks:
            if not isinstance(fallback, Tool):
                raise ConfigurationError(f"tool {self.name!r}: fallback {fallback!r} is not a Tool")

    def health(self) -> ToolHealth:
        """The tool's state in this process: its breaker and its recent error rate."""
        return self.stats.health(self.name, self.breaker)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly, bypassing validation."""
        return self.function(*args, **kwargs)

    async def invoke(self, arguments: dict[str, Any], context: RunContext) -> Any:
        """Call the function with validated ``arguments`` and return its raw result.

        A sync function without a ``timeout`` runs inline on the event loop (no thread
        hop, about 90 µs cheaper); nothing can interrupt it, so give every sync tool that
        does I/O a ``timeout``. With a ``timeout`` it runs in its own daemon thread so the
        run can stop waiting for it. Python cannot stop a thread: a timed-out sync call
        keeps running in the background, its late result is discarded, and it never keeps
        the process or ``run_sync`` from returning. Async functions are cancelled on
        timeout.
        """
        if self.context_param is not None:
            arguments = {**arguments, self.context_param: context}
        if self.is_async:
            return await self.function(**arguments)
        if self.timeout is None:
            return self.function(**arguments)
        return await _in_daemon_thread(self.function, arguments)


async def _in_daemon_thread(function: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """Run ``function`` in a new daemon thread and await its result.

    Not the default executor: ``asyncio.run`` joins that executor's threads on exit, so one
    hung call would hang the caller forever.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting (timeout or cancellation)
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def work() -> None:
        try:
            result = function(**arguments)
        except BaseException as exc:
            _post(loop, deliver, None, exc)
        else:
            _post(loop, deliver, result, None)

    threading.Thread(target=work, name="tether-tool", daemon=True).start()
    return await future


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # A closed loop raises RuntimeError: nobody is waiting for the result any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolHealth:
    """How a tool has been doing in this process (from :meth:`Tool.health`)."""

    name: str
    """The tool's name."""
    breaker: BreakerSnapshot | None
    """Its breaker's state, or ``None`` without a breaker."""
    calls: int
    """Calls among the recent ones (at most :data:`HEALTH_WINDOW`)."""
    errors: int
    """How many of them failed."""

    @property
    def error_rate(self) -> float:
        """Failed share of the recent calls (0.0 without calls)."""
        return self.errors / self.calls if self.calls else 0.0


HEALTH_WINDOW = 100
"""Recent calls a tool's health is computed over."""


class ToolStats:
    """The outcomes of a tool's recent calls (a sliding window of :data:`HEALTH_WINDOW`)."""

    def __init__(self) -> None:
        self._outcomes: deque[bool] = deque(maxlen=HEALTH_WINDOW)

    def record(self, *, failed: bool) -> None:
        """Add one call's outcome."""
        self._outcomes.append(failed)

    def health(self, name: str, breaker: CircuitBreaker | None) -> ToolHealth:
        """The health of the tool ``name`` with ``breaker``."""
        return ToolHealth(
            name=name,
            breaker=None if breaker is None else breaker.snapshot(),
            calls=len(self._outcomes),
            errors=sum(self._outcomes),
        )


ToolFunction = Callable[..., Any]
_E = TypeVar("_E", bound=StrEnum)


@overload
def tool(function: ToolFunction, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk | str = Risk.READ,
    effect: Effect | str | None = None,
    timeout: timedelta | float | None = None,
    compensate: Callable[[Compensation], Any] | None = None,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    probe: Callable[[], Any] | None = None,
    rate_limit: TokenBucket | None = None,
    concurrency: int | None = None,
    fallbacks: Sequence[Tool] = (),
    dedupe: Dedupe | None = None,
) -> Callable[[ToolFunction], Tool]: ...


def tool(
    function: ToolFunction | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    risk: Risk | str = Risk.READ,
    effect: Effect | str | None = None,
    timeout: timedelta | float | None = None,
    compensate: Callable[[Compensation], Any] | None = None,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    probe: Callable[[], Any] | None = None,
    rate_limit: TokenBucket | None = None,
    concurrency: int | None = None,
    fallbacks: Sequence[Tool] = (),
    dedupe: Dedupe | None = None,
) -> Tool | Callable[[ToolFunction], Tool]:
    """Turn a function into a :class:`Tool`; use as ``@tool`` or ``@tool(...)``.

    Args:
        function: The function, when used as a bare decorator.
        name: Tool name; defaults to the function's name.
        description: Defaults to the docstring's summary and body (without ``Args:``).
        risk: ``read`` (default), ``write``, ``external`` or ``irreversible``.
        effect: ``read``, ``idempotent`` or ``at_most_once``. Defaults to ``read`` for
            read tools and ``at_most_once`` otherwise (the safe choice after a crash).
        timeout: Seconds (or a ``timedelta``) one call may take. Default none.
        compensate: Undoes one completed call, given a :class:`Compensation`; run by
            ``tether undo``. Must be idempotent. Default none.
        retry: Retries retryable failures (see :mod:`tether.tools.guard`). Default: one
            attempt. An ``at_most_once`` tool is retried only after an error that proves
            the call did not happen (``ToolError(..., executed=False)``).
        breaker: A circuit breaker for the tool. Default none.
        probe: A side-effect-free check run instead of a real call while the breaker is
            half-open; required with a breaker unless the risk is ``read``.
        rate_limit: A :class:`~tether.resilience.TokenBucket`. Default none.
        concurrency: At most this many calls at once. Default: no cap.
        fallbacks: Tools that serve, in order, when this one fails or its breaker is open.
        dedupe: Reuse a recent identical call's result, from any run (see :class:`Dedupe`).

    Raises:
        ConfigurationError: The function cannot be described (missing type hints,
            ``*args``), the name is invalid, or risk and effect contradict each other.
    """

    def build(fn: ToolFunction) -> Tool:
        return _build_tool(
            fn,
            name=name,
            description=description,
            risk=risk,
            effect=effect,
            timeout=timeout,
            compensate=compensate,
            retry=retry,
            breaker=breaker,
            probe=probe,
            rate_limit=rate_limit,
            concurrency=concurrency,
            fallbacks=tuple(fallbacks),
            dedupe=dedupe,
        )

    if function is not None:
        return build(function)
    return build


def _build_tool(
    fn: ToolFunction,
    *,
    name: str | None,
    description: str | None,
    risk: Risk | str,
    effect: Effect | str | None,
    timeout: timedelta | float | None,
    compensate: Callable[[Compensation], Any] | None = None,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    probe: Callable[[], Any] | None = None,
    rate_limit: TokenBucket | None = None,
    concurrency: int | None = None,
    fallbacks: tuple[Tool, ...] = (),
    dedupe: Dedupe | None = None,
) -> Tool:
    tool_name: str = name or str(getattr(fn, "__name__", ""))
    if not _NAME_PATTERN.fullmatch(tool_name):
        raise ConfigurationError(
            f"invalid tool name {tool_name!r}: use letters, digits, '_', '.', '-' "
            "(at most 64 characters, not starting with a digit)"
        )
    risk_value = _enum(Risk, risk, "risk")
    default_effect = Effect.READ if risk_value is Risk.READ else Effect.AT_MOST_ONCE
    effect_value = default_effect if effect is None else _enum(Effect, effect, "effect")
    if risk_value is not Risk.READ and effect_value is Effect.READ:
        raise ConfigurationError(
            f"tool {tool_name!r}: risk {risk_value.value!r} has side effects, so effect "
            "cannot be 'read'; use 'idempotent' or 'at_most_once'"
        )
    summary, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
    args_model, context_param, result_adapter = _signature_models(fn, tool_name, param_docs)
    tool_description = description if description is not None else summary
    return Tool(
        name=tool_name,
        description=tool_description,
        function=fn,
        args_model=args_model,
        result_adapter=result_adapter,
        context_param=context_param,
        risk=risk_value,
        effect=effect_value,
        timeout=_as_timedelta(timeout, tool_name),
        compensate=compensate,
        retry=retry,
        breaker=breaker,
        probe=probe,
        rate_limit=rate_limit,
        concurrency=concurrency,
        fallbacks=fallbacks,
        dedupe=dedupe,
        definition=ToolDefinition(
            name=tool_name,
            description=tool_description,
            parameters=args_model.model_json_schema(),
        ),
    )


def _enum(kind: type[_E], value: _E | str, label: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ConfigurationError(f"invalid {label} {value!r}; expected one of {allowed}") from None


def _as_timedelta(value: timedelta | float | None, tool_name: str) -> timedelta | None:
    if value is None:
        return None
    result = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if result <= timedelta(0):
        raise ConfigurationError(f"tool {tool_name!r}: timeout must be positive")
    return result


def _signature_models(
    fn: ToolFunction, tool_name: str, param_docs: dict[str, str]
) -> tuple[type[BaseModel], str | None, TypeAdapter[Any] | None]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"tool {tool_name!r}: parameter {param.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        annotation = hints.get(param.name)
        if annotation is RunContext:
            context_param = param.name
            continue
        if annotation is None:
            raise ConfigurationError(
                f"tool {tool_name!r}: parameter {param.name!r} needs a type hint"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, Field(default, description=param_docs.get(param.name)))
    model = create_model(
        f"{tool_name.replace('.', '_').replace('-', '_')}_arguments",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )
    returns = hints.get("return")
    result_adapter = None if returns is None or returns is Any else TypeAdapter(returns)
    return model, context_param, result_adapter


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_PARAM_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and ``Args:`` entries."""
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1), None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            entry = _PARAM_LINE.match(line)
            if entry:
                current = entry.group(1)
                params[current] = entry.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}"
    return "\n".join(description).strip(), params
