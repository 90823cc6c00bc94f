"""Budget races (reliability spec §3c, SQLite tier): concurrent runs never overshoot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tether import Agent, ModelSettings, RunStatus, tool
from tether.governance.budgets import Budget
from tether.messages import Message, ModelResponse, ToolDefinition
from tether.models import Price
from tether.runtime import Tether
from tether.store import SqliteStore
from tether.testing import FunctionModel, call

TRIALS = 20
RUNS = 50
STEPS = 4  # three tool calls, then the final answer
USER_DAY = Decimal("1.00")
PRICE = Price(input=Decimal("0.01"), output=Decimal(1000))  # $0.001 per output token
MAX_OUTPUT = 50  # worst case: $0.05 of output per call


@tool
def look() -> str:
    """Look around."""
    return "nothing new"


class Ledger:
    """The fake provider: prices each call, and counts calls made without a reservation."""

    def __init__(self, store: SqliteStore, seed: int) -> None:
        self.store = store
        self.random = random.Random(seed)
        self.in_flight = 0
        self.calls = 0
        self.unreserved = 0

    async def answer(
        self, messages: Sequence[Message], tools: Sequence[ToolDefinition]
    ) -> ModelResponse:
        self.calls += 1
        self.in_flight += 1
        try:
            (held,) = self.store.query("SELECT count(*) FROM budget_reservations")[0]
            if held < self.in_flight:
                self.unreserved += 1
            for _ in range(self.random.randrange(4)):
                await asyncio.sleep(0)  # let other runs interleave mid-call
            cost = Decimal(self.random.randrange(10_000, 50_001)) / 1_000_000
            steps = sum(1 for m in messages if m.role == "assistant")
            if steps + 1 < STEPS:
                return ModelResponse(tool_calls=(call("look", id=f"c{steps}"),), cost_usd=cost)
            return ModelResponse(text="done", cost_usd=cost)
        finally:
            self.in_flight -= 1


async def _trial(path: Path, seed: int, global_hour: Decimal) -> None:
    store = SqliteStore(path, synchronous="NORMAL")
    ledger = Ledger(store, seed)
    agent = Agent(
        name="racer",
        model=FunctionModel(ledger.answer, name="fake"),
        tools=[look],
        model_settings=ModelSettings(max_output_tokens=MAX_OUTPUT),
    )
    budgets = [
        Budget.per_user(USER_DAY, window=timedelta(days=1)),
        Budget.global_(global_hour, window=timedelta(hours=1)),
        Budget.per_run(Decimal("0.30")),
    ]
    runtime = Tether(store=store, budgets=budgets, prices={"fake": PRICE})
    try:
        results = await asyncio.gather(
            *(runtime.run(agent, f"task {i}", user="ana") for i in range(RUNS))
        )
        assert runtime.budgets is not None
        windows = {w.budget.split(":")[0]: w for w in await runtime.budgets.book.usage()}
        user, hour = windows["user"], windows["global"]
        assert user.spent_usd <= USER_DAY
        assert hour.spent_usd <= global_hour
        assert user.spent_usd == hour.spent_usd == sum(r.cost_usd or 0 for r in results)
        assert ledger.unreserved == 0
        assert store.query("SELECT count(*) FROM budget_reservations") == [(0,)]
        assert all(w.reserved_usd == 0 for w in await runtime.budgets.book.usage())
        statuses = {r.status for r in results}
        assert statuses <= {RunStatus.COMPLETED, RunStatus.BUDGET_EXCEEDED}, statuses
        assert RunStatus.BUDGET_EXCEEDED in statuses  # demand is ~6x the budget
        tighter = "global" if global_hour < USER_DAY else "user"
        for r in results:
            if r.status is RunStatus.BUDGET_EXCEEDED:
                assert r.error is not None
                assert tighter in r.error.message or "run:" in r.error.message
    finally:
        await store.close()


@pytest.mark.anyio
async def test_concurrent_runs_of_one_user_never_overshoot_the_budget(tmp_path: Path) -> None:
    for trial in range(TRIALS):
        # Every other trial, the global hourly cap is the tighter one and must win.
        global_hour = Decimal("5") if trial % 2 == 0 else Decimal("0.60")
        await _trial(tmp_path / f"trial-{trial}.db", seed=trial, global_hour=global_hour)
