"""tether.tools.mcp against real MCP servers: the npm reference servers and a broken one.

The npm servers are pinned in tests/mcp_servers/package-lock.json and installed with
``npm ci`` (CI does it before ``make check``). Without them the tests that need them
fail when ``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import error_of, last_result
from tether import (
    Agent,
    RunStatus,
    Tether,
    ToolCallFinished,
    ToolCallStarted,
    ToolError,
    ToolResultMessage,
)
from tether.errors import ConfigurationError
from tether.messages import ToolCall
from tether.resilience import RetryPolicy
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import Effect, Rejected, Risk, RunContext, Tool, Validated, validate_call
from tether.tools.executor import execute

try:
    from tether.tools.mcp import MCPToolset, provider_name, risk_and_effect
except ImportError:  # pragma: no cover - the `mcp` extra is missing
    if os.environ.get("CI"):
        raise
    pytest.skip("the mcp extra is not installed", allow_module_level=True)

import mcp.types as mcp_types

pytestmark = pytest.mark.anyio

SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
PACKAGES = SERVERS / "node_modules" / "@modelcontextprotocol"
EVERYTHING = PACKAGES / "server-everything" / "dist" / "index.js"
FILESYSTEM = PACKAGES / "server-filesystem" / "dist" / "index.js"
HANG_SERVER = SERVERS / "hang_server.py"
SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NO_RETRY = RetryPolicy(max_attempts=1)


def missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def node() -> str:
    """The node executable, with the npm servers installed."""
    path = shutil.which("node")
    if path is None:
        missing("node is not installed")
    if not (EVERYTHING.exists() and FILESYSTEM.exists()):
        missing("the MCP test servers are not installed: (cd tests/mcp_servers && npm ci)")
    assert path is not None
    return path


@pytest.fixture
def errlog(tmp_path: Path) -> Iterator[IO[str]]:
    """Where the servers' stderr goes (read it when a test fails)."""
    with (tmp_path / "server-stderr.log").open("w") as log:
        yield log


@pytest.fixture
def pidfile(tmp_path: Path) -> Path:
    """Each server started through `recorded` appends its pid here."""
    return tmp_path / "pids"


def recorded(pidfile: Path, *command: str) -> tuple[str, list[str]]:
    """A command that appends the server's pid to ``pidfile``, then becomes the server."""
    quoted = " ".join(f"'{part}'" for part in command)
    return "sh", ["-c", f"echo $$ >> '{pidfile}'; exec {quoted}"]


def pids(pidfile: Path) -> list[int]:
    return [int(line) for line in pidfile.read_text().split()] if pidfile.exists() else []


def alive(pid: int) -> bool:
    """Whether ``pid`` exists at all: a zombie (exited, never reaped) counts as alive."""
    return Path(f"/proc/{pid}").exists()


def context() -> RunContext:
    return RunContext(
        run_id="run", agent="test", user=None, step=1, call_id="call", idempotency_key="key"
    )


def check(tools: list[Tool], name: str, arguments: dict[str, Any] | str) -> Validated | Rejected:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    tool_call = ToolCall(id="call", name=name, arguments=raw)
    return validate_call(tool_call, {t.name: t for t in tools}, max_argument_bytes=100_000)


async def run_call(tools: list[Tool], name: str, arguments: dict[str, Any]) -> Any:
    """Validate one call like the run loop does, then invoke the tool."""
    checked = check(tools, name, arguments)
    assert isinstance(checked, Validated), checked
    return await checked.tool.invoke(checked.arguments, context())


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}


@pytest.fixture
async def everything(node: str, errlog: IO[str]) -> AsyncIterator[MCPToolset]:
    async with MCPToolset.stdio(
        node, [str(EVERYTHING), "stdio"], name="everything", prefix="everything", errlog=errlog
    ) as toolset:
        yield toolset


# Names and risks without a server.


def test_provider_names_are_safe_and_distinct() -> None:
    assert provider_name("get-sum") == "get-sum"
    assert provider_name("files.read/all") == "files_read_all"
    assert provider_name("echo", prefix="everything") == "everything__echo"
    assert provider_name("") == "_"
    long_a, long_b = provider_name("a" * 100), provider_name("a" * 99 + "b")
    assert len(long_a) == len(long_b) == 64
    assert long_a != long_b
    assert long_a.startswith("a" * 55 + "_")
    for name in (long_a, provider_name("ünïcode tool"), provider_name("x", prefix="my.srv")):
        assert SAFE_NAME.fullmatch(name), name


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        ({"read_only_hint": True, "destructive_hint": True}, (Risk.READ, Effect.READ)),
        (
            {"destructive_hint": True, "idempotent_hint": True},
            (Risk.IRREVERSIBLE, Effect.AT_MOST_ONCE),
        ),
        ({"idempotent_hint": True}, (Risk.WRITE, Effect.IDEMPOTENT)),
        ({"idempotent_hint": True, "open_world_hint": True}, (Risk.EXTERNAL, Effect.IDEMPOTENT)),
        ({"destructive_hint": False, "open_world_hint": False}, (Risk.WRITE, Effect.AT_MOST_ONCE)),
        ({"open_world_hint": True}, (Risk.EXTERNAL, Effect.AT_MOST_ONCE)),
        ({"read_only_hint": False}, (Risk.EXTERNAL, Effect.AT_MOST_ONCE)),
        ({}, (Risk.EXTERNAL, Effect.AT_MOST_ONCE)),
    ],
)
def test_risk_and_effect_from_annotations(
    hints: dict[str, bool], expected: tuple[Risk, Effect]
) -> None:
    assert risk_and_effect(mcp_types.ToolAnnotations(**hints)) == expected


def test_no_annotations_is_the_safe_default() -> None:
    assert risk_and_effect(None) == (Risk.EXTERNAL, Effect.AT_MOST_ONCE)


def test_importing_tether_does_not_import_the_sdk() -> None:
    code = (
        "import sys, tether, tether.tools\n"
        "print([m for m in sys.modules if m.split('.')[0] == 'mcp'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_public_surface_is_sorted_and_documented() -> None:
    import tether.tools.mcp as module

    names = module.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in ("MCPToolset", "provider_name", "risk_and_effect"):
        value = getattr(module, name)
        assert inspect.getdoc(value), name
    for attr, member in vars(MCPToolset).items():
        if not attr.startswith("_") and callable(getattr(MCPToolset, attr)):
            assert inspect.getdoc(member), attr


async def test_tools_are_not_available_before_connecting() -> None:
    toolset = MCPToolset.stdio("true")
    with pytest.raises(ConfigurationError, match="not connected"):
        _ = toolset.tools


# server-everything over stdio.


async def test_lists_tools_with_schemas_mapped_names_and_risks(everything: MCPToolset) -> None:
    tools = by_name(everything.tools)
    assert {"everything__echo", "everything__get-sum", "everything__get-tiny-image"} <= set(tools)
    assert all(SAFE_NAME.fullmatch(name) for name in tools)
    echo = tools["everything__echo"]
    assert echo.definition.name == "everything__echo"
    schema = echo.definition.parameters
    assert schema["properties"]["message"]["type"] == "string"
    assert schema["required"] == ["message"]
    assert echo.description
    assert everything.remote_name("everything__echo") == "echo"
    assert everything.local_name("get-sum") == "everything__get-sum"
    # Annotations as the server declares them (all four hints explicit).
    assert (echo.risk, echo.effect) == (Risk.READ, Effect.READ)
    gzip = tools["everything__gzip-file-as-resource"]  # open world, idempotent
    assert (gzip.risk, gzip.effect) == (Risk.EXTERNAL, Effect.IDEMPOTENT)
    toggle = tools["everything__toggle-simulated-logging"]  # closed world, not idempotent
    assert (toggle.risk, toggle.effect) == (Risk.WRITE, Effect.AT_MOST_ONCE)


async def test_echo_and_get_sum_run_through_validation_and_the_executor(
    everything: MCPToolset,
) -> None:
    tools = everything.tools
    for name, arguments, expected in [
        ("everything__echo", {"message": "hello"}, "Echo: hello"),
        ("everything__get-sum", {"a": 2, "b": 3.5}, "The sum of 2 and 3.5 is 5.5."),
    ]:
        checked = check(tools, name, arguments)
        assert isinstance(checked, Validated)
        assert checked.arguments == arguments
        outcome = await execute(checked, context(), timeout_s=None, max_output_chars=10_000)
        assert not outcome.is_error, outcome
        assert outcome.content == expected
    # Concurrent calls share the session.
    echoes = await asyncio.gather(
        *(run_call(tools, "everything__echo", {"message": str(i)}) for i in range(5))
    )
    assert echoes == [f"Echo: {i}" for i in range(5)]


async def test_invalid_arguments_are_rejected_by_tether(everything: MCPToolset) -> None:
    tools = everything.tools
    for arguments in ['{"a": 1, "b": "2"}', '{"a": 1}', '{"a": true, "b": 2}']:
        rejected = check(tools, "everything__get-sum", arguments)
        assert isinstance(rejected, Rejected), arguments
        assert rejected.error_class == "invalid_arguments"
        error = json.loads(rejected.content)
        assert "input schema" in error["problems"][0]["msg"]
    wrong_type = check(tools, "everything__get-sum", '{"a": 1, "b": "2"}')
    assert isinstance(wrong_type, Rejected)
    assert "at b: '2' is not of type 'number'" in wrong_type.content
    # 1e400 parses to infinity, which JSON cannot carry: refused, never sent as null.
    overflow = check(tools, "everything__get-sum", '{"a": 1e400, "b": 1}')
    assert isinstance(overflow, Rejected)
    assert "out of range" in overflow.content
    enum = check(tools, "everything__get-structured-content", {"location": "Paris"})
    assert isinstance(enum, Rejected)
    assert "is not one of" in enum.content


async def test_the_servers_own_invalid_params_error_is_a_tool_error(
    everything: MCPToolset,
) -> None:
    get_sum = by_name(everything.tools)["everything__get-sum"]
    with pytest.raises(ToolError) as raised:
        await get_sum.invoke({"a": 1, "b": "x"}, context())  # skips tether's validation
    assert raised.value.error_class == "invalid_arguments"
    assert "-32602" in raised.value.message
    assert not raised.value.retryable


async def test_structured_content_is_json_and_images_are_described(
    everything: MCPToolset,
) -> None:
    weather = await run_call(
        everything.tools, "everything__get-structured-content", {"location": "Chicago"}
    )
    assert set(weather) == {"temperature", "conditions", "humidity"}
    image = await run_call(everything.tools, "everything__get-tiny-image", {})
    assert isinstance(image, str)
    assert re.search(r"\[image: image/png, \d+ bytes\]", image), image
    assert "base64" not in image and len(image) < 500


async def test_extra_arguments_pass_but_reserved_names_are_refused(
    node: str, errlog: IO[str]
) -> None:
    # get-env's schema is {"type": "object", "properties": {}}: any property is allowed.
    async with MCPToolset.stdio(node, [str(EVERYTHING), "stdio"], errlog=errlog) as toolset:
        tools = toolset.tools
        passed = check(tools, "get-env", {"anything": [1, {"b": None}]})
        assert isinstance(passed, Validated)
        assert passed.arguments == {"anything": [1, {"b": None}]}
        nested_overflow = check(tools, "get-env", '{"anything": [{"n": -1e400}]}')
        assert isinstance(nested_overflow, Rejected)
        assert "out of range" in nested_overflow.content
        for name in ("model_dump_json", "__pydantic_serializer__"):
            refused = check(tools, "get-env", {name: 1})
            assert isinstance(refused, Rejected), name
            assert "cannot be passed" in refused.content


# server-filesystem: confinement and risks from annotations.


async def test_filesystem_server_is_confined_and_its_risks_follow_annotations(
    node: str, errlog: IO[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    async with MCPToolset.stdio(
        node, [str(FILESYSTEM), str(root)], prefix="fs", errlog=errlog
    ) as files:
        tools = by_name(files.tools)
        assert (tools["fs__read_text_file"].risk, tools["fs__read_text_file"].effect) == (
            Risk.READ,
            Effect.READ,
        )
        assert (tools["fs__write_file"].risk, tools["fs__write_file"].effect) == (
            Risk.IRREVERSIBLE,
            Effect.AT_MOST_ONCE,
        )
        assert (tools["fs__create_directory"].risk, tools["fs__create_directory"].effect) == (
            Risk.WRITE,
            Effect.IDEMPOTENT,
        )
        target = root / "note.txt"
        await run_call(files.tools, "fs__write_file", {"path": str(target), "content": "hi"})
        assert target.read_text() == "hi"
        read = await run_call(files.tools, "fs__read_text_file", {"path": str(target)})
        assert read == {"content": "hi"}
        with pytest.raises(ToolError) as raised:
            await run_call(files.tools, "fs__write_file", {"path": str(outside), "content": "x"})
        assert raised.value.error_class == "tool_error"
        assert "Access denied" in raised.value.message
    assert not outside.exists()


# An agent run end to end.


async def test_an_agent_run_uses_the_mcp_tool_and_journals_its_result(
    everything: MCPToolset,
) -> None:
    model = ScriptedModel(
        [
            call("everything__get-sum", {"a": "2", "b": 3}),  # refused by tether
            call("everything__get-sum", {"a": 2, "b": 3}),
            "2 + 3 = 5",
        ]
    )
    agent = Agent(name="mcp", model=model, tools=everything.tools)
    runtime = Tether(store="memory://")
    try:
        result = await runtime.run(agent, "What is 2 + 3?")
        events = await runtime.events(result.run_id)
    finally:
        await runtime.close()

    assert result.status is RunStatus.COMPLETED, result.error
    assert result.output == "2 + 3 = 5"
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [(e.executed, e.error_class) for e in finished] == [
        (False, "invalid_arguments"),
        (True, None),
    ]
    assert finished[1].content == "The sum of 2 and 3 is 5."
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert [(s.tool, s.arguments, s.effect) for s in started] == [
        ("everything__get-sum", {"a": 2, "b": 3}, "read")
    ]
    refusal = model.requests[1].messages[-1]
    assert isinstance(refusal, ToolResultMessage)
    assert error_of(refusal)["error"] == "invalid_arguments"
    assert last_result(model).content == "The sum of 2 and 3 is 5."


# Failures: a killed server, a silent one, a hung one.


async def test_a_killed_server_fails_typed_then_the_next_call_reconnects(
    node: str, errlog: IO[str], pidfile: Path
) -> None:
    command, args = recorded(pidfile, node, str(EVERYTHING), "stdio")
    clock = FakeClock()
    async with MCPToolset.stdio(
        command, args, name="everything", errlog=errlog, clock=clock
    ) as toolset:
        tools = toolset.tools
        assert await run_call(tools, "echo", {"message": "one"}) == "Echo: one"
        [first] = pids(pidfile)
        os.kill(first, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(ToolError) as raised:
            await run_call(tools, "echo", {"message": "two"})
        assert raised.value.error_class == "tool_unavailable"
        assert raised.value.retryable
        assert time.monotonic() - started < 10
        assert await run_call(tools, "echo", {"message": "three"}) == "Echo: three"
        first_again, second = pids(pidfile)
        assert first_again == first and alive(second)
    assert not alive(first) and not alive(second)
    assert clock.sleeps == []  # the first reconnect attempt succeeded


async def test_a_server_killed_during_a_call_fails_that_call_at_once(
    node: str, errlog: IO[str], pidfile: Path
) -> None:
    command, args = recorded(pidfile, node, str(EVERYTHING), "stdio")
    async with MCPToolset.stdio(command, args, errlog=errlog) as toolset:
        tools = toolset.tools
        slow = asyncio.create_task(
            run_call(tools, "trigger-long-running-operation", {"duration": 20, "steps": 2})
        )
        await asyncio.sleep(0.5)
        started = time.monotonic()
        os.kill(pids(pidfile)[0], signal.SIGKILL)
        with pytest.raises(ToolError) as raised:
            await slow
        assert time.monotonic() - started < 10  # not the 20 s the operation would take
        assert raised.value.error_class == "tool_unavailable"
        assert raised.value.executed is None  # it may have had an effect
        assert await run_call(tools, "echo", {"message": "back"}) == "Echo: back"
    assert not any(alive(pid) for pid in pids(pidfile))


async def test_reconnect_backs_off_with_jitter_on_the_injected_clock(
    node: str, errlog: IO[str], pidfile: Path
) -> None:
    # Starts 2 and 3 exit at once; start 4 serves again.
    script = (
        f"n=$(cat '{pidfile}' 2>/dev/null | wc -l); echo $$ >> '{pidfile}'; "
        f'if [ "$n" -eq 1 ] || [ "$n" -eq 2 ]; then exit 3; fi; '
        f"exec '{node}' '{EVERYTHING}' stdio"
    )
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, initial_delay=1.0, max_delay=8.0, deadline=None)
    async with MCPToolset.stdio(
        "sh", ["-c", script], errlog=errlog, clock=clock, reconnect=policy
    ) as toolset:
        [first] = pids(pidfile)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(ToolError, match="failed during 'echo'"):
            await run_call(toolset.tools, "echo", {"message": "lost"})
        assert await run_call(toolset.tools, "echo", {"message": "back"}) == "Echo: back"
    assert len(pids(pidfile)) == 4
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0
    assert not any(alive(pid) for pid in pids(pidfile))


async def test_a_server_that_never_answers_fails_to_connect_in_time(
    errlog: IO[str], pidfile: Path
) -> None:
    toolset = MCPToolset.stdio(
        sys.executable,
        [str(HANG_SERVER), "silent", str(pidfile)],
        errlog=errlog,
        connect_timeout=1.0,
        reconnect=NO_RETRY,
    )
    started = time.monotonic()
    with pytest.raises(ToolError) as raised:
        await toolset.connect()
    elapsed = time.monotonic() - started
    assert raised.value.error_class == "tool_unavailable"
    assert raised.value.executed is False
    assert "within 1 s" in raised.value.message
    assert elapsed < 15
    [pid] = pids(pidfile)
    assert not alive(pid)


async def test_a_call_that_hangs_times_out_and_the_next_call_restarts_the_server(
    errlog: IO[str], pidfile: Path
) -> None:
    async with MCPToolset.stdio(
        sys.executable, [str(HANG_SERVER), "hang", str(pidfile)], errlog=errlog, timeout=1.0
    ) as toolset:
        wait = by_name(toolset.tools)["wait"]
        for _ in range(2):
            started = time.monotonic()
            checked = check(toolset.tools, "wait", {})
            assert isinstance(checked, Validated)
            outcome = await execute(checked, context(), timeout_s=None, max_output_chars=1000)
            assert time.monotonic() - started < 10
            assert outcome.is_error
            assert outcome.error_class == "tool_timeout"
            assert json.loads(outcome.content)["retryable"] is True
        assert wait.risk is Risk.READ
        assert len(pids(pidfile)) == 2
    assert not any(alive(pid) for pid in pids(pidfile))


async def test_calls_after_close_fail_without_retry(errlog: IO[str], pidfile: Path) -> None:
    toolset = MCPToolset.stdio(
        sys.executable, [str(HANG_SERVER), "hang", str(pidfile)], errlog=errlog
    )
    await toolset.connect()
    tools = toolset.tools
    await toolset.aclose()
    await toolset.aclose()
    with pytest.raises(ToolError) as raised:
        await run_call(tools, "wait", {})
    assert raised.value.error_class == "tool_unavailable"
    assert not raised.value.retryable and raised.value.executed is False


async def test_an_http_endpoint_nobody_listens_on_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    toolset = MCPToolset.http(url, reconnect=NO_RETRY, connect_timeout=20)
    with pytest.raises(ToolError) as raised:
        await toolset.connect()
    assert raised.value.error_class == "tool_unavailable"
    assert raised.value.retryable and raised.value.executed is False


async def test_a_missing_command_is_a_configuration_error() -> None:
    toolset = MCPToolset.stdio("/nonexistent/mcp-server", reconnect=NO_RETRY)
    with pytest.raises(ConfigurationError, match="cannot start"):
        await toolset.connect()


# Names, schemas and overrides, on the broken server's listing.


async def test_odd_names_are_mapped_and_an_invalid_schema_leaves_its_tool_out(
    errlog: IO[str], pidfile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with MCPToolset.stdio(
        sys.executable, [str(HANG_SERVER), "hang", str(pidfile)], errlog=errlog
    ) as toolset:
        names = [t.name for t in toolset.tools]
    long_name = provider_name("x" * 100)
    assert names == ["wait", "files_read_all", long_name]
    assert toolset.remote_name("files_read_all") == "files.read/all"
    assert toolset.remote_name(long_name) == "x" * 100
    assert "'broken' is left out" in caplog.text


async def test_overrides_replace_fields_and_keep_the_reverse_map(
    errlog: IO[str], pidfile: Path
) -> None:
    async with MCPToolset.stdio(
        sys.executable,
        [str(HANG_SERVER), "hang", str(pidfile)],
        errlog=errlog,
        trust_annotations=False,
        overrides={
            "wait": {"risk": "read", "effect": "read", "name": "pause", "timeout": 5},
            "files_read_all": {"description": "Read every file."},
        },
    ) as toolset:
        tools = by_name(toolset.tools)
    pause = tools["pause"]
    assert (pause.risk, pause.effect) == (Risk.READ, Effect.READ)
    assert pause.definition.name == "pause"
    assert pause.timeout is not None and pause.timeout.total_seconds() == 5
    assert toolset.remote_name("pause") == "wait"
    assert tools["files_read_all"].definition.description == "Read every file."
    # Without trusted annotations, everything else is the safe default.
    long_tool = tools[provider_name("x" * 100)]
    assert (long_tool.risk, long_tool.effect) == (Risk.EXTERNAL, Effect.AT_MOST_ONCE)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nope": {"risk": "read"}}, "no tool 'nope'"),
        ({"wait": {"risk": "dangerous"}}, "not one of"),
        ({"wait": {"risk": "write", "effect": "read"}}, "cannot be 'read'"),
        ({"wait": {"name": "has.dot"}}, "must match"),
        ({"wait": {"colour": "red"}}, "colour"),
    ],
)
async def test_bad_overrides_are_configuration_errors_and_stop_the_server(
    errlog: IO[str], pidfile: Path, overrides: dict[str, dict[str, Any]], message: str
) -> None:
    toolset = MCPToolset.stdio(
        sys.executable,
        [str(HANG_SERVER), "hang", str(pidfile)],
        errlog=errlog,
        overrides=overrides,
    )
    with pytest.raises(ConfigurationError, match=message):
        await toolset.connect()
    [pid] = pids(pidfile)
    assert not alive(pid)


# server-everything over Streamable HTTP.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def http_server(node: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "http-server.log").open("w") as log:
        server = subprocess.Popen(
            [node, str(EVERYTHING), "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None, "the HTTP server exited"
                    assert time.monotonic() < deadline, "the HTTP server did not listen in 30 s"
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.terminate()
            server.wait(timeout=30)


async def test_streamable_http(http_server: str) -> None:
    async with MCPToolset.http(
        http_server, headers={"X-Test": "tether"}, name="everything-http"
    ) as toolset:
        tools = toolset.tools
        assert "get-sum" in by_name(tools)
        assert await run_call(tools, "echo", {"message": "over http"}) == "Echo: over http"
        assert await run_call(tools, "get-sum", {"a": 1, "b": 2}) == "The sum of 1 and 2 is 3."


async def test_each_call_carries_the_run_trace_in_its_meta(errlog: IO[str], pidfile: Path) -> None:
    from tether.ids import traceparent

    async with MCPToolset.stdio(
        sys.executable, [str(HANG_SERVER), "meta", str(pidfile)], errlog=errlog, timeout=5.0
    ) as toolset:
        checked = check(toolset.tools, "wait", {})
        assert isinstance(checked, Validated)
        outcome = await execute(checked, context(), timeout_s=None, max_output_chars=1000)
    assert not outcome.is_error, outcome.content
    meta = json.loads(outcome.content)
    assert meta["traceparent"] == traceparent(context().run_id)
