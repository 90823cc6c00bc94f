"""Agents loadable by reference (``tests.durability.agents:NAME``) for worker tests.

Their models are pure functions of the conversation, so a run resumed in another process
gets the same answers; their tools count executions in a module-level ledger.
"""

from __future__ import annotations

from collections import Counter

from tether import Agent, RunContext, RunLimits, tool
from tether.messages import AssistantMessage
from tether.testing import FunctionModel, call

executions: Counter[str] = Counter()
keys: list[str] = []


@tool
def lookup(key: str) -> str:
    """Read a value."""
    executions["lookup"] += 1
    return f"value-of-{key}"


@tool(risk="external", effect="idempotent")
def pay(ctx: RunContext, amount: int) -> str:
    """Pay an amount (idempotent with the run's key)."""
    executions["pay"] += 1
    keys.append(ctx.idempotency_key)
    return f"paid {amount}"


@tool(risk="external", effect="at_most_once")
def notify(text: str) -> str:
    """Send a notification (not idempotent)."""
    executions["notify"] += 1
    return "sent"


def _scripted(messages, tools):  # type: ignore[no-untyped-def]
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    script = [
        call("lookup", {"key": "a"}),
        call("pay", {"amount": 5}),
        call("notify", {"text": "done"}),
        "all done",
    ]
    return script[min(turn, len(script) - 1)]


flow = Agent(
    name="flow",
    model=FunctionModel(_scripted, name="pure"),
    tools=[lookup, pay, notify],
    limits=RunLimits(max_steps=20),
)
