"""`tether show` draws a run's journal as a tree."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tether import Agent, RunLimits, ToolError
from tether.cli.tree import run_tree
from tether.governance.approvals import ApprovalPolicy
from tether.messages import ModelResponse, Usage
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio


@tool(risk="read")
def lookup(name: str) -> str:
    """Look up a name.

    Args:
        name: The name.
    """
    if name == "bad":
        raise ToolError("no such name")
    return f"{name} found"


@tool(risk="external", effect="at_most_once")
def pay(amount: int) -> str:
    """Pay.

    Args:
        amount: Dollars.
    """
    return "paid"


def _text(events: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(run_tree(events))  # type: ignore[arg-type]
    return buffer.getvalue()


async def test_steps_calls_results_approvals_and_the_ending() -> None:
    first = ModelResponse(
        tool_calls=(call("lookup", {"name": "bad"}, id="a"), call("pay", {"amount": 3}, id="b")),
        usage=Usage(input_tokens=12, output_tokens=4),
        attempts=2,
        degraded=True,
    )
    model = ScriptedModel([first, call("lookup", {"name": "x"}), call("lookup", {"name": "y"})])
    agent = Agent(
        name="payer",
        model=model,
        tools=[lookup, pay],
        approvals=ApprovalPolicy(),
        limits=RunLimits(max_steps=5, wrap_up=False),
    )
    store = InMemoryStore()
    runtime = Tether(store=store)
    waiting = await runtime.run(agent, "pay sk-ant-api03-SECRETSECRETSECRET")
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    await runtime.resume(waiting.run_id, agent=agent)
    text = _text(await store.events(waiting.run_id))
    lines = text.splitlines()
    assert lines[0].startswith("payer · pay [REDACTED] · user - · run_")
    assert "1 model scripted · 12→4 tokens · $0" in text and "2 attempts · fallback" in text
    assert '2 lookup({"name": "bad"})' in text and "✗ tool_error" in text
    assert '3 pay({"amount": 3})' in text
    assert "? waits for approval" in text and "approved by bob" in text and "✓ paid" in text
    assert "limit max_steps" in text
    assert lines[-1].strip().endswith("max_steps (max_steps)")
