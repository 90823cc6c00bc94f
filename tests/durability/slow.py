"""An agent whose one tool call takes a while, for graceful-stop tests."""

from __future__ import annotations

import asyncio

from tether import Agent, tool
from tether.messages import AssistantMessage
from tether.testing import FunctionModel, call

started = asyncio.Event()
calls = 0


@tool
async def crunch() -> str:
    """Takes a little while."""
    global calls
    calls += 1
    started.set()
    await asyncio.sleep(0.2)
    return "crunched"


def _respond(messages, tools):  # type: ignore[no-untyped-def]
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    return call("crunch") if turn == 0 else "done"


agent = Agent(name="slow", model=FunctionModel(_respond), tools=[crunch])
