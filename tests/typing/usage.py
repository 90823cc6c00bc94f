"""Documented usage that must type-check under ``mypy --strict`` (run by ``make typecheck``).

Not collected by pytest: it asserts static types, not behaviour.
"""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from tether import Agent, RunContext, RunResult, RunStatus, Tether, tool
from tether.testing import ScriptedModel, call


class Invoice(BaseModel):
    total: int


@tool(risk="write", effect="idempotent", timeout=5)
def book(ctx: RunContext, amount: int) -> str:
    """Book an amount."""
    return f"{ctx.idempotency_key}:{amount}"


text_agent = Agent(name="text", model=ScriptedModel([call("book", {"amount": 1}), "ok"]))
assert_type(text_agent, Agent[str])
assert_type(text_agent.run_sync("go"), RunResult[str])
assert_type(text_agent.run_sync("go").output, str | None)

typed_agent = Agent(name="typed", model=ScriptedModel(['{"total": 3}']), output_type=Invoice)
assert_type(typed_agent, Agent[Invoice])
assert_type(Tether().run_sync(typed_agent, "go").output, Invoice | None)
assert_type(typed_agent.run_sync("go").status, RunStatus)
