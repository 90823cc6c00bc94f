"""Tools from MCP servers: :class:`MCPToolset`.

Needs the ``mcp`` extra (``pip install 'tether[mcp]'``). Neither ``import tether`` nor
``import tether.tools`` imports this module or the SDK; import it yourself::

    from tether.tools.mcp import MCPToolset

    async with MCPToolset.stdio("npx", ["-y", "@modelcontextprotocol/server-everything"]) as mcp:
        agent = Agent(name="demo", model=model, tools=mcp.tools)
        result = await Tether().run(agent, "Add 2 and 3")

Every tool the server lists becomes a plain :class:`~tether.tools.tool.Tool`:

- **Name**: mapped to ``^[A-Za-z0-9_-]{1,64}$``, which every provider accepts
  (:func:`provider_name`); :meth:`MCPToolset.remote_name` maps it back.
- **Arguments**: ``args_model`` validates them against the tool's ``inputSchema`` with
  ``jsonschema`` (the schema's own ``$schema`` dialect, Draft 2020-12 when it names none),
  so :func:`~tether.tools.validation.validate_call` refuses bad arguments before anything
  is sent. The schema is also what the model sees (``definition.parameters``).
- **Risk and effect**: from the tool's annotations (:func:`risk_and_effect`), or set per
  tool with ``overrides``.
- **Calls**: one ``tools/call`` request within ``timeout`` seconds. A result with
  ``isError`` raises :class:`~tether.errors.ToolError` with the server's text, so the model
  sees a structured error; structured content comes back as JSON, text as text, images
  and other binary content as a one-line description.

Failures of the server itself are typed, retryable ``ToolError`` values and never hang a
run: ``tool_unavailable`` (the process died, the connection closed, or no session could be
opened; the error classes breakers count and fallbacks serve for) and ``tool_timeout`` (no
answer within ``timeout``). After either, the next call opens a new session (a new process
for stdio) with jittered backoff from a :class:`~tether.resilience.RetryPolicy` on the
injected :class:`~tether.clock.Clock`. The toolset never repeats the call that failed
itself: the server may have run it. (A ``retry`` set on the tool through ``overrides``
repeats it only if its effect allows, or when the error says ``executed=False``: no
session could be opened, so nothing was sent.)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import random
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TextIO

import httpx2
import mcp.types as mcp_types
from jsonschema.validators import (  # type: ignore[import-untyped]
    Draft202012Validator,
    validator_for,
)
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from referencing import Registry

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError, ToolError
from tether.ids import traceparent
from tether.messages import ToolDefinition
from tether.resilience import RetryPolicy
from tether.tools.tool import Effect, Risk, RunContext, Tool

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_RECONNECT",
    "DEFAULT_TIMEOUT",
    "MCPToolset",
    "TransportFactory",
    "provider_name",
    "risk_and_effect",
]

logger = logging.getLogger("tether")

DEFAULT_TIMEOUT = 30.0
"""Seconds one ``tools/call`` may take before it fails with ``tool_timeout``."""

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds one attempt to open a session (start the process, handshake) may take."""

DEFAULT_RECONNECT = RetryPolicy(max_attempts=3, initial_delay=0.5, max_delay=5.0, deadline=60.0)
"""Attempts and jittered backoff for opening a session: 3 attempts, backoff caps 0.5 s
then 1 s, all within 60 s."""

_CLOSE_TIMEOUT = 10.0
"""Seconds to wait for a session to shut down (the SDK bounds its own process shutdown at
about 6 s: close stdin, then SIGTERM, then SIGKILL) before cancelling it."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")
_CONTEXT = "__tether_run__"
"""Name the calling run's context travels under (never an MCP argument: it is added after
validation), for the ``traceparent`` sent in each call's ``_meta``."""
_HASH_CHARS = 8
_MAX_PROBLEMS = 5
_MAX_PROBLEM_CHARS = 200

TransportFactory = Callable[[], AbstractAsyncContextManager[Any]]
"""Makes a fresh MCP SDK transport (an async context manager yielding the read and write
streams) for each session."""


def provider_name(remote: str, *, prefix: str | None = None) -> str:
    """Return the name a model sees for the MCP tool ``remote``.

    The name matches ``^[A-Za-z0-9_-]{1,64}$`` (what OpenAI and Anthropic accept):
    ``<prefix>__<remote>`` with a prefix, every other character (``.``, ``/``, spaces)
    replaced by ``_``. A name longer than 64 characters keeps its first 55 and ends with
    ``_`` and 8 hex digits of the sha256 of the full name, so distinct long names stay
    distinct.

    Args:
        remote: The tool's name on the server.
        prefix: Put before the name with ``__``, such as the server's name. Default none.
    """
    full = remote if prefix is None else f"{prefix}__{remote}"
    safe = _UNSAFE_CHARACTERS.sub("_", full) or "_"
    if len(safe) <= 64:
        return safe
    return f"{safe[: 64 - _HASH_CHARS - 1]}_{_digest(full)}"


def risk_and_effect(annotations: mcp_types.ToolAnnotations | None) -> tuple[Risk, Effect]:
    """Map a tool's MCP annotations to tether's risk and effect.

    Only explicit hints count; a missing one is unknown. The first rule that applies wins:

    1. ``readOnlyHint: true``: ``read`` / ``read``.
    2. ``destructiveHint: true``: ``irreversible`` / ``at_most_once``.
    3. Otherwise the effect is ``idempotent`` with ``idempotentHint: true`` and
       ``at_most_once`` without, and the risk is ``external`` with ``openWorldHint: true``,
       ``write`` with ``openWorldHint: false`` or (the world unknown) with
       ``idempotentHint: true``, and ``external`` when nothing is known.

    So a tool without annotations is ``external`` / ``at_most_once``, the safe default.
    Annotations are hints from a server you may not control: correct them with
    ``overrides``, or ignore them all with ``trust_annotations=False``.
    """
    hints = annotations or mcp_types.ToolAnnotations()
    if hints.read_only_hint is True:
        return Risk.READ, Effect.READ
    if hints.destructive_hint is True:
        return Risk.IRREVERSIBLE, Effect.AT_MOST_ONCE
    effect = Effect.IDEMPOTENT if hints.idempotent_hint is True else Effect.AT_MOST_ONCE
    if hints.open_world_hint is True:
        return Risk.EXTERNAL, effect
    if hints.open_world_hint is False or hints.idempotent_hint is True:
        return Risk.WRITE, effect
    return Risk.EXTERNAL, effect


class _RemoteArguments(BaseModel):
    """Arguments of a remote tool, validated against its JSON schema.

    Pydantic stores undeclared fields in ``__pydantic_extra__``; the after-validator also
    puts them in ``__dict__``, which is where tether reads validated arguments from.
    """

    model_config = ConfigDict(extra="allow")

    schema_validator: ClassVar[Any] = None
    """The compiled ``jsonschema`` validator of the tool's ``inputSchema``."""

    @model_validator(mode="before")
    @classmethod
    def _match_schema(cls, data: Any) -> Any:
        try:
            problems = _schema_problems(cls.schema_validator, data)
        except Exception as exc:  # a broken schema must reject the call, never crash the run
            raise PydanticCustomError(
                "json_schema",
                "the tool's input schema could not be applied: {error}",
                {"error": _clip(f"{type(exc).__name__}: {exc}")},
            ) from None
        if problems:
            raise PydanticCustomError(
                "json_schema",
                "arguments do not match the tool's input schema: {problems}",
                {"problems": "; ".join(problems)},
            )
        if _has_non_finite_number(data):
            raise PydanticCustomError(
                "finite_number", "numbers must be finite (1e400 overflows to infinity)"
            )
        names = data if isinstance(data, dict) else {}
        reserved = sorted(key for key in names if isinstance(key, str) and _is_reserved(key))
        if reserved:
            raise PydanticCustomError(
                "reserved_argument",
                "argument names {names} cannot be passed to an MCP tool through tether",
                {"names": ", ".join(map(repr, reserved))},
            )
        return data

    @model_validator(mode="after")
    def _expose(self) -> Self:
        self.__dict__.update(self.__pydantic_extra__ or {})
        return self


_BASE_MODEL_ATTRIBUTES = frozenset(dir(BaseModel))


def _is_reserved(key: str) -> bool:
    """Names that would shadow what pydantic itself reads from the arguments object."""
    return key.startswith("__") or (key.startswith("model_") and key in _BASE_MODEL_ATTRIBUTES)


def _has_non_finite_number(data: Any) -> bool:
    """Whether a float in ``data`` is infinite or NaN (JSON cannot carry it to the server)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return True
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def _schema_problems(validator: Any, data: Any) -> list[str]:
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    problems = []
    for error in errors[:_MAX_PROBLEMS]:
        path = "/".join(str(p) for p in error.absolute_path)
        problems.append(_clip(f"at {path or '(root)'}: {error.message}"))
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return problems


def _arguments_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """Build the argument model of one remote tool; raises ``SchemaError`` for a bad schema."""
    validator_class = validator_for(schema, default=Draft202012Validator)
    validator_class.check_schema(schema)
    # An empty registry: "$ref"s resolve inside the schema only, never over the network.
    validator = validator_class(schema, registry=Registry())
    namespace = {"schema_validator": validator, "__module__": __name__}
    model: type[BaseModel] = type(f"{name}_arguments", (_RemoteArguments,), namespace)
    return model


@dataclasses.dataclass(eq=False)
class _Session:
    """One MCP session, held open by a task of its own.

    The SDK's task groups must be entered and exited by the same task, and tool calls
    come from many tasks.
    """

    client: Client
    task: asyncio.Task[None]
    stop: asyncio.Event
    users: int = 0
    """Calls in flight on this session."""
    retired: bool = False
    """No new call uses it; it closes when the last call in flight returns."""


class MCPToolset:
    """The tools of one MCP server, as tether tools, over one supervised session.

    Build one with :meth:`stdio` or :meth:`http` and use it as an async context manager
    (or call :meth:`connect` and :meth:`aclose`)::

        async with MCPToolset.stdio("node", ["server.js"], prefix="fs") as fs:
            agent = Agent(name="files", model=model, tools=fs.tools)

    Use a toolset inside the event loop that entered it; its session is a task on that
    loop (so ``Agent.run_sync``, which starts a loop of its own, cannot use it).

    ``overrides`` maps a tool's name (the server's name or the mapped one) to fields of
    :class:`~tether.tools.tool.Tool`, applied with :func:`dataclasses.replace` to the built
    tool: ``{"write_file": {"risk": "write", "effect": "idempotent"}}``. ``risk`` and
    ``effect`` accept strings, ``timeout`` seconds, and a new ``name`` or ``description``
    also updates the definition sent to models. It is also the way to attach the
    per-tool wrappers :class:`~tether.tools.tool.Tool` has fields for (retry policies,
    breakers, approvals).
    """

    def __init__(
        self,
        transport: TransportFactory,
        *,
        name: str,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: RetryPolicy = DEFAULT_RECONNECT,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        trust_annotations: bool = True,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare a toolset; nothing starts before :meth:`connect`.

        Prefer :meth:`stdio` and :meth:`http`, which take the same keyword arguments.

        Args:
            transport: Makes a fresh MCP SDK transport for each session, such as
                ``lambda: stdio_client(params)``.
            name: The server's name in error messages.
            prefix: Put before every tool name with ``__`` (``fs__read_file``), to keep
                the tools of several servers apart. Default none.
            timeout: Seconds one call may take. Default 30.
            connect_timeout: Seconds one attempt to open a session may take. Default 30.
            reconnect: Attempts and backoff for opening a session. Default
                :data:`DEFAULT_RECONNECT` (3 attempts within 60 s).
            overrides: Tool fields to replace, per tool name (see the class docstring).
                Default none.
            trust_annotations: Whether risk and effect come from the server's
                annotations; if false, every tool is ``external`` / ``at_most_once``
                unless overridden. Default true.
            clock: Where backoff waits happen. Default :class:`~tether.clock.SystemClock`.
            rng: Random generator for backoff jitter. Default a new unseeded one.

        Raises:
            ConfigurationError: A timeout is not positive.
        """
        for label, seconds in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not seconds > 0:
                raise ConfigurationError(f"MCPToolset {label} must be positive, not {seconds!r}")
        self.name = name
        """The server's name in error messages."""
        self.prefix = prefix
        """Put before every tool name with ``__``, or ``None``."""
        self.timeout = timeout
        """Seconds one call may take."""
        self.connect_timeout = connect_timeout
        """Seconds one attempt to open a session may take."""
        self._transport = transport
        self._reconnect = reconnect
        self._overrides = dict(overrides or {})
        self._trust_annotations = trust_annotations
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._session: _Session | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._tools: list[Tool] | None = None
        self._remote_names: dict[str, str] = {}
        self._local_names: dict[str, str] = {}
        self._closed = False

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        errlog: TextIO | None = None,
        name: str | None = None,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: RetryPolicy = DEFAULT_RECONNECT,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        trust_annotations: bool = True,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> MCPToolset:
        """A server run as a subprocess, speaking MCP on its stdin and stdout.

        The process starts in its own process group and is shut down with its children
        when the session closes (stdin closed, then ``SIGTERM``, then ``SIGKILL``).

        Args:
            command: The executable, such as ``"npx"``, ``"uvx"`` or ``"node"``.
            args: Its arguments. Default none.
            env: Environment variables added to the few the SDK passes on (``HOME``,
                ``PATH``, ``USER``, ...); the rest of this process's environment is not
                inherited. Default none.
            cwd: Working directory of the process. Default this process's.
            errlog: Where the server's stderr goes (a file with a descriptor). Default
                ``sys.stderr``.
            name: The server's name in error messages. Default the command's file name.
            prefix: See :class:`MCPToolset`. Default none.
            timeout: Seconds one call may take. Default 30.
            connect_timeout: Seconds one attempt to start the server and open a session
                may take. Default 30.
            reconnect: Attempts and backoff for (re)starting the server. Default
                :data:`DEFAULT_RECONNECT`.
            overrides: Tool fields to replace, per tool name. Default none.
            trust_annotations: Whether risk and effect come from the annotations.
                Default true.
            clock: Where backoff waits happen. Default the system clock.
            rng: Random generator for backoff jitter. Default a new unseeded one.
        """
        parameters = StdioServerParameters(
            command=command, args=list(args), env=dict(env) if env else None, cwd=cwd
        )

        def transport() -> AbstractAsyncContextManager[Any]:
            return stdio_client(parameters, errlog=errlog if errlog is not None else sys.stderr)

        return cls(
            transport,
            name=name or Path(command).name,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            overrides=overrides,
            trust_annotations=trust_annotations,
            clock=clock,
            rng=rng,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect: RetryPolicy = DEFAULT_RECONNECT,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        trust_annotations: bool = True,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> MCPToolset:
        """A server reached over Streamable HTTP (one endpoint, usually ending in ``/mcp``).

        Args:
            url: The endpoint, such as ``"http://127.0.0.1:3001/mcp"``.
            headers: Sent with every request (``Authorization``, ...). Default none.
            name: The server's name in error messages. Default the URL.
            prefix: See :class:`MCPToolset`. Default none.
            timeout: Seconds one call may take. Default 30.
            connect_timeout: Seconds one attempt to open a session may take. Default 30.
            reconnect: Attempts and backoff for opening a session. Default
                :data:`DEFAULT_RECONNECT`.
            overrides: Tool fields to replace, per tool name. Default none.
            trust_annotations: Whether risk and effect come from the annotations.
                Default true.
            clock: Where backoff waits happen. Default the system clock.
            rng: Random generator for backoff jitter. Default a new unseeded one.
        """
        header_values = dict(headers or {})

        @contextlib.asynccontextmanager
        async def transport() -> AsyncIterator[Any]:
            # 30 s to connect, 300 s between bytes of a held-open stream (the SDK's
            # defaults); each call is bounded by `timeout` besides.
            limits = httpx2.Timeout(30.0, read=300.0)
            async with (
                httpx2.AsyncClient(headers=header_values, timeout=limits) as http,
                streamable_http_client(url, http_client=http) as streams,
            ):
                yield streams

        return cls(
            transport,
            name=name or url,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
            overrides=overrides,
            trust_annotations=trust_annotations,
            clock=clock,
            rng=rng,
        )

    @property
    def tools(self) -> list[Tool]:
        """The server's tools as tether tools, in the server's order (a new list).

        Raises:
            ConfigurationError: The toolset is not connected yet.
        """
        if self._tools is None:
            raise ConfigurationError(
                f"MCP toolset {self.name!r} is not connected: use 'async with' or connect()"
            )
        return list(self._tools)

    def remote_name(self, name: str) -> str:
        """Return the server's name of the tool the model knows as ``name``.

        Raises:
            KeyError: No tool of this toolset has that name.
        """
        return self._remote_names[name]

    def local_name(self, remote: str) -> str:
        """Return the name the model knows the server's tool ``remote`` by.

        Raises:
            KeyError: The server listed no tool of that name.
        """
        return self._local_names[remote]

    async def connect(self) -> None:
        """Open a session and list the server's tools (once; later calls do nothing).

        Raises:
            ToolError: No session could be opened (``tool_unavailable``) within
                ``reconnect``'s attempts.
            ConfigurationError: The command does not exist or may not be run, or
                ``overrides`` names an unknown tool or an invalid field.

        After a failure the server is stopped and ``connect`` may be called again.
        """
        if self._tools is not None:
            return
        session = await self._acquire()
        try:
            listed = await self._list_tools(session)
            tools = self._build_tools(listed)
        except BaseException:
            self._release(session)
            self._retire(session)  # stop the server; connect() may be called again
            await self._closed_sessions()
            raise
        self._release(session)
        self._tools = tools

    async def aclose(self) -> None:
        """Close the session and stop the server (for stdio). Safe to call twice.

        Calls made afterwards fail with ``tool_unavailable`` (not retryable).
        """
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await _close_session(session)
        await self._closed_sessions()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Sessions.

    async def _acquire(self) -> _Session:
        """The live session, opened (with retries) if there is none; count one user."""
        if self._closed:
            raise ToolError(
                f"MCP toolset {self.name!r} is closed",
                error_class="tool_unavailable",
                retryable=False,
                executed=False,
            )
        session = self._session
        if session is None:
            async with self._lock:
                if self._session is None:
                    self._session = await self._reconnect.call(
                        self._open, clock=self._clock, rng=self._rng
                    )
                session = self._session
        session.users += 1
        return session

    def _release(self, session: _Session) -> None:
        session.users -= 1
        if session.retired and session.users == 0:
            self._close_later(session)

    def _retire(self, session: _Session) -> None:
        """Stop using ``session``: the next call opens a new one."""
        if self._session is session:
            self._session = None
        if not session.retired:
            session.retired = True
            if session.users == 0:
                self._close_later(session)

    async def _closed_sessions(self) -> None:
        """Wait until the sessions being closed in the background are closed."""
        if self._closing:
            await asyncio.wait(set(self._closing))

    def _close_later(self, session: _Session) -> None:
        if session.stop.is_set():
            return
        task = asyncio.get_running_loop().create_task(_close_session(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _open(self) -> _Session:
        """Start one session within ``connect_timeout`` seconds."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        stop = asyncio.Event()
        task = loop.create_task(self._hold(ready, stop), name=f"tether-mcp-{self.name}")
        try:
            async with asyncio.timeout(self.connect_timeout):
                client = await ready
        except TimeoutError:
            await _stop_task(task)
            raise ToolError(
                f"MCP server {self.name!r} did not open a session within "
                f"{self.connect_timeout:g} s",
                error_class="tool_unavailable",
                retryable=True,
                executed=False,
            ) from None
        except (FileNotFoundError, PermissionError) as exc:
            await _stop_task(task)
            raise ConfigurationError(f"MCP server {self.name!r} cannot start: {exc}") from exc
        except BaseException as exc:
            await _stop_task(task)
            if isinstance(exc, Exception):
                raise self._unavailable("could not open a session", exc, executed=False) from exc
            raise
        return _Session(client=client, task=task, stop=stop)

    async def _hold(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Enter the SDK client, hand it over, and keep it open until ``stop`` is set."""
        try:
            client = Client(
                self._transport(),
                client_info=mcp_types.Implementation(name="tether", version=_version()),
            )
            async with client:
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.debug("MCP session with %r ended: %r", self.name, exc)

    async def _list_tools(self, session: _Session) -> list[mcp_types.Tool]:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    page = await session.client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        return listed
        except TimeoutError as exc:
            self._retire(session)
            raise ToolError(
                f"MCP server {self.name!r} did not list its tools within {self.timeout:g} s",
                error_class="tool_timeout",
                retryable=True,
            ) from exc
        except Exception as exc:
            self._retire(session)
            raise self._unavailable("could not list its tools", exc) from exc

    # Tools.

    def _build_tools(self, listed: Sequence[mcp_types.Tool]) -> list[Tool]:
        names = _unique_names([t.name for t in listed], self.prefix)
        specs = {t.name: t for t in reversed(listed)}  # the first of duplicate names wins
        pairs: list[tuple[str, Tool]] = []
        for remote, local in names.items():
            built = self._build_tool(specs[remote], local)
            if built is not None:
                pairs.append((remote, built))
        pairs = self._apply_overrides(pairs)
        self._remote_names = {built.name: remote for remote, built in pairs}
        self._local_names = {remote: built.name for remote, built in pairs}
        return [built for _, built in pairs]

    def _build_tool(self, spec: mcp_types.Tool, local: str) -> Tool | None:
        schema = copy.deepcopy(dict(spec.input_schema))
        try:
            args_model = _arguments_model(local, schema)
        except Exception as exc:
            logger.warning(
                "MCP server %r: tool %r is left out, its input schema is invalid: %s",
                self.name,
                spec.name,
                _clip(str(exc)),
            )
            return None
        risk, effect = (
            risk_and_effect(spec.annotations)
            if self._trust_annotations
            else (Risk.EXTERNAL, Effect.AT_MOST_ONCE)
        )
        description = spec.description or spec.title or f"The MCP tool {spec.name!r}."
        return Tool(
            name=local,
            description=description,
            function=self._tool_function(spec.name),
            args_model=args_model,
            result_adapter=None,
            context_param=_CONTEXT,
            risk=risk,
            effect=effect,
            timeout=None,
            definition=ToolDefinition(name=local, description=description, parameters=schema),
        )

    def _tool_function(self, remote: str) -> Callable[..., Any]:
        async def call_remote(**arguments: Any) -> Any:
            context: RunContext | None = arguments.pop(_CONTEXT, None)
            meta = None if context is None else {"traceparent": traceparent(context.run_id)}
            return await self._call(remote, arguments, meta)

        call_remote.__name__ = call_remote.__qualname__ = (
            f"mcp_{_UNSAFE_CHARACTERS.sub('_', remote)}"
        )
        call_remote.__doc__ = f"Call the tool {remote!r} of the MCP server {self.name!r}."
        return call_remote

    def _apply_overrides(self, pairs: list[tuple[str, Tool]]) -> list[tuple[str, Tool]]:
        index = {remote: i for i, (remote, _) in enumerate(pairs)}
        index.update({built.name: i for i, (_, built) in enumerate(pairs)})
        result = list(pairs)
        for key, fields in self._overrides.items():
            if key not in index:
                known = ", ".join(remote for remote, _ in pairs)
                raise ConfigurationError(
                    f"MCP server {self.name!r} has no tool {key!r} to override; it has: {known}"
                )
            remote, built = result[index[key]]
            result[index[key]] = (remote, _override(built, fields))
        seen: set[str] = set()
        for _, built in result:
            if built.name in seen:
                raise ConfigurationError(
                    f"MCP server {self.name!r}: two tools are named {built.name!r} after overrides"
                )
            seen.add(built.name)
        return result

    # Calls.

    async def _call(
        self, remote: str, arguments: dict[str, Any], meta: dict[str, str] | None = None
    ) -> Any:
        session = await self._acquire()
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                result = await session.client.call_tool(
                    remote,
                    arguments,
                    meta=meta,  # type: ignore[arg-type]
                )
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                self._retire(session)
                raise ToolError(
                    f"MCP server {self.name!r} did not answer {remote!r} within "
                    f"{self.timeout:g} s; the next call starts a new session",
                    error_class="tool_timeout",
                    retryable=True,
                ) from None
            raise self._call_failure(session, remote, exc) from exc
        finally:
            self._release(session)
        return _result_value(result)

    def _call_failure(self, session: _Session, remote: str, exc: Exception) -> ToolError:
        """Map an exception of ``tools/call`` to a ``ToolError``; retire a broken session."""
        if isinstance(exc, MCPError) and not session.task.done():
            if exc.code == mcp_types.INVALID_PARAMS:
                return ToolError(
                    f"{remote}: {exc.message}", error_class="invalid_arguments", executed=False
                )
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                self._retire(session)
                return ToolError(
                    f"MCP server {self.name!r} timed out on {remote!r}: {exc.message}",
                    error_class="tool_timeout",
                    retryable=True,
                )
            if exc.code != mcp_types.CONNECTION_CLOSED:
                return ToolError(
                    f"MCP error {exc.code} from {remote!r}: {exc.message}", error_class="mcp_error"
                )
        elif isinstance(exc, ValidationError | RuntimeError) and not session.task.done():
            # The SDK checks results against the tool's output schema.
            return ToolError(
                f"MCP server {self.name!r} answered {remote!r} with an invalid result: "
                f"{_clip(str(exc))}",
                error_class="invalid_result",
            )
        self._retire(session)
        return self._unavailable(f"failed during {remote!r}", exc)

    def _unavailable(
        self, what: str, exc: BaseException, *, executed: bool | None = None
    ) -> ToolError:
        detail = _clip(str(exc) or type(exc).__name__)
        return ToolError(
            f"MCP server {self.name!r} {what}: {detail}; the next call starts a new session",
            error_class="tool_unavailable",
            retryable=True,
            executed=executed,
        )


def _override(built: Tool, fields: Mapping[str, Any]) -> Tool:
    changes = dict(fields)
    if "risk" in changes:
        changes["risk"] = _enum(Risk, changes["risk"], built.name)
    if "effect" in changes:
        changes["effect"] = _enum(Effect, changes["effect"], built.name)
    if isinstance(changes.get("timeout"), int | float):
        changes["timeout"] = timedelta(seconds=changes["timeout"])
    name = changes.get("name", built.name)
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"override of {built.name!r}: name {name!r} must match ^[A-Za-z0-9_-]{{1,64}}$"
        )
    if "definition" not in changes and ("name" in changes or "description" in changes):
        changes["definition"] = dataclasses.replace(
            built.definition,
            name=name,
            description=changes.get("description", built.description),
        )
    try:
        result = dataclasses.replace(built, **changes)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"override of {built.name!r}: {exc}") from exc
    if result.risk is not Risk.READ and result.effect is Effect.READ:
        raise ConfigurationError(
            f"override of {built.name!r}: risk {result.risk.value!r} has side effects, so "
            "effect cannot be 'read'"
        )
    return result


def _enum(kind: type[Risk] | type[Effect], value: Any, tool: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ConfigurationError(
            f"override of {tool!r}: {value!r} is not one of {allowed}"
        ) from None


def _unique_names(remotes: Sequence[str], prefix: str | None) -> dict[str, str]:
    """Map each remote name (first listing wins) to a distinct provider name."""
    mapped: dict[str, str] = {}
    for remote in remotes:
        if remote not in mapped:
            mapped[remote] = provider_name(remote, prefix=prefix)
    counts: dict[str, int] = {}
    for local in mapped.values():
        counts[local] = counts.get(local, 0) + 1
    for remote, local in mapped.items():
        full = remote if prefix is None else f"{prefix}__{remote}"
        if counts[local] > 1 and local != full:
            # Two names became one ("a.b" and "a_b"): the altered one gets a hash suffix.
            mapped[remote] = f"{local[: 64 - _HASH_CHARS - 1]}_{_digest(full)}"
    return mapped


def _result_value(result: mcp_types.CallToolResult) -> Any:
    """What the model is given: structured content, or the content blocks as text."""
    text = "\n".join(_describe(block) for block in result.content)
    if result.is_error:
        error_class = "invalid_arguments" if "-32602" in text[:40] else "tool_error"
        raise ToolError(text or "the tool reported an error", error_class=error_class)
    if result.structured_content is not None:
        return result.structured_content
    return text


def _describe(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return f"[{block.type}: {block.mime_type}, {_base64_size(block.data)} bytes]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link: {block.uri} ({block.name})]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return f"[resource: {resource.uri}]\n{resource.text}"
        size = _base64_size(resource.blob)
        return f"[resource: {resource.uri}, {resource.mime_type or 'binary'}, {size} bytes]"
    return f"[{getattr(block, 'type', type(block).__name__)} content]"


def _base64_size(data: str) -> int:
    return max(len(data) * 3 // 4 - data[-2:].count("="), 0)


async def _close_session(session: _Session) -> None:
    session.stop.set()
    await _stop_task(session.task, graceful=True)


async def _stop_task(task: asyncio.Task[None], *, graceful: bool = False) -> None:
    """End a session task: let it exit (``graceful``) or cancel it, both bounded."""
    if graceful:
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)
        if done:
            return
    task.cancel()
    await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def _clip(text: str, limit: int = _MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _version() -> str:
    try:
        return metadata.version("tether")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
