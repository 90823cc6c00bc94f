"""The agent and runtime of the budget kill trial (``tests.crash.budget_agent``).

Run as ``python -m tests.crash.budget_agent submit DB N`` (submit N runs of ``agent``
for user ``ana``) or ``python -m tests.crash.budget_agent work DB`` (a worker with the
trial's budgets and prices, until nothing is claimable; the trial enables the
``after_budget_reserve`` failpoint, so workers die holding reservations).

The model is a pure function of the conversation: 3 lookups, then an answer, each
response costing exactly ``COST``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from decimal import Decimal

from tether import Agent, ModelResponse, RunLimits, Tether, tool
from tether.governance.budgets import Budget
from tether.messages import AssistantMessage
from tether.models import ModelSettings
from tether.models.pricing import Price
from tether.store import SqliteStore
from tether.testing import FunctionModel, call
from tether.worker import Worker

COST = Decimal("0.001")
"""What each response costs."""
PRICE = Price(input=Decimal("1"), output=Decimal("10"))
"""$1 / $10 per MTok: a reservation's worst case is about $0.0011."""
RESPONSES = 4
USER_DAY = Decimal("0.05")
"""Room for 12 runs' 48 responses ($0.048) and one reservation; a leaked reservation of
a killed process would soon leave too little for the next one."""
LEASE = timedelta(seconds=1)


@tool(risk="read")
def lookup(n: int) -> str:
    """Look item n up."""
    return f"item {n}"


def _answer(messages, tools):  # type: ignore[no-untyped-def]
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    if turn < RESPONSES - 1:
        return ModelResponse(
            tool_calls=(call("lookup", {"n": turn}, id=f"c{turn}"),), cost_usd=COST
        )
    return ModelResponse(text="looked up", cost_usd=COST)


agent = Agent(
    name="budgeted",
    model=FunctionModel(_answer, name="priced"),
    tools=[lookup],
    limits=RunLimits(max_steps=20),
    model_settings=ModelSettings(max_output_tokens=100),
)


def runtime(path: str) -> Tether:
    """The trial's runtime: a per-user daily budget, priced model, short leases."""
    budgets = [Budget.per_user(USER_DAY, window=timedelta(days=1))]
    tether = Tether(
        store=SqliteStore(path),
        budgets=budgets,
        prices={"priced": PRICE},
        max_crashes=50,  # the trial kills often; a crash loop is not what it tests
    )
    tether.lease_for = LEASE
    return tether


async def _main(command: str, path: str, count: int) -> None:
    tether = runtime(path)
    try:
        if command == "submit":
            for i in range(count):
                await tether.submit("tests.crash.budget_agent:agent", f"task {i}", user="ana")
        else:
            await Worker(tether, concurrency=3, poll_interval=0.05).run(until_idle=True)
    finally:
        await tether.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
