"""Agents for the durable CLI tests, loaded as ``tests.cli.agents_for_cli:NAME`` (or by
file path, so this module imports nothing from ``tests``).

Every model is a pure function of the conversation, so a run resumed in another process
gets the same answers. The slow agents take the path of a ledger file as their task and
pass it to their tool: the tool appends one line per execution and, on the first
execution only, blocks for a minute (long enough for a test to kill the process), so a
test can tell whether a tool ran again after a resume.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether import Agent, ModelError, RunLimits, tool
from tether.messages import AssistantMessage, ToolResultMessage, UserMessage
from tether.testing import FunctionModel, call

BLOCK_SECONDS = 60.0


@tool(risk="read")
def echo(text: str) -> str:
    """Repeat the text."""
    return f"echo {text}"


def _record(ledger: str, name: str) -> int:
    """Append ``name`` to the ledger; return how many executions it held before."""
    path = Path(ledger)
    previous = path.read_text().count("\n") if path.exists() else 0
    with path.open("a") as file:
        file.write(f"{name}\n")
    return previous


async def _execute(ledger: str, name: str) -> str:
    if _record(ledger, name) == 0:
        await asyncio.sleep(BLOCK_SECONDS)
    return f"{name} ran"


@tool(risk="read")
async def read_slowly(ledger: str) -> str:
    """Read something (repeatable); blocks on its first execution."""
    return await _execute(ledger, "read_slowly")


@tool(risk="external", effect="at_most_once")
async def send_once(ledger: str) -> str:
    """Send something that must not be sent twice; blocks on its first execution."""
    return await _execute(ledger, "send_once")


def _task(messages) -> str:  # type: ignore[no-untyped-def]
    return next(m.content for m in messages if isinstance(m, UserMessage))


def _turn(messages) -> int:  # type: ignore[no-untyped-def]
    return sum(isinstance(m, AssistantMessage) for m in messages)


def _last_tool_result(messages) -> str:  # type: ignore[no-untyped-def]
    results = [m.content for m in messages if isinstance(m, ToolResultMessage)]
    return results[-1] if results else ""


def _one_call(tool_name: str, argument: str):  # type: ignore[no-untyped-def]
    def respond(messages, tools):  # type: ignore[no-untyped-def]
        if _turn(messages) == 0:
            return call(tool_name, {argument: _task(messages)})
        return f"finished; the tool said: {_last_tool_result(messages)}"

    return respond


hello = Agent(
    name="cli-hello",
    model=FunctionModel(_one_call("echo", "text"), name="pure"),
    tools=[echo],
    limits=RunLimits(max_steps=5),
)

slow_read = Agent(
    name="cli-slow-read",
    model=FunctionModel(_one_call("read_slowly", "ledger"), name="pure"),
    tools=[read_slowly],
    limits=RunLimits(max_steps=5),
)

slow_once = Agent(
    name="cli-slow-once",
    model=FunctionModel(_one_call("send_once", "ledger"), name="pure"),
    tools=[send_once],
    limits=RunLimits(max_steps=5),
)

broken = Agent(
    name="cli-broken",
    model=FunctionModel(lambda messages, tools: ModelError("the model is down"), name="pure"),
)


def _count(messages, tools):  # type: ignore[no-untyped-def]
    return call("echo", {"text": f"turn {_turn(messages)}"})


looping = Agent(
    name="cli-looping",
    model=FunctionModel(_count, name="pure"),
    tools=[echo],
    limits=RunLimits(max_steps=3),
)
