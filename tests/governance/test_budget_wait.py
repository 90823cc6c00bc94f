"""``Tether(budget_exhausted="wait")``: an exhausted budget pauses the run until a person
raises it (``Tether.raise_budget``, ``tether budgets raise``), then the run goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import Agent, RunStatus
from tether.cli.main import app
from tether.errors import ConfigurationError, RunStateError
from tether.events import BudgetExhausted, BudgetRaised
from tether.governance.audit import audit_log
from tether.governance.budgets import Budget
from tether.messages import ModelResponse
from tether.models import ModelSettings, Price
from tether.runtime import Tether
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio

PRICE = Price(input=Decimal(0), output=Decimal(1000))  # $0.001 per output token
WORST_CASE = Decimal("0.01")  # 10 output tokens at most


@tool(risk="read")
def step(n: int) -> str:
    """Take a step.

    Args:
        n: Which.
    """
    return f"step {n} done"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = (
        InMemoryStore(clock=FakeClock())
        if request.param == "memory"
        else SqliteStore(tmp_path / "t.db")
    )
    yield made
    await made.close()


def _costly(item: str | object) -> ModelResponse:
    if isinstance(item, str):
        return ModelResponse(text=item, cost_usd=WORST_CASE)
    return ModelResponse(tool_calls=(item,), cost_usd=WORST_CASE)  # type: ignore[arg-type]


def _agent(model: ScriptedModel) -> Agent[str]:
    return Agent(
        name="walker",
        model=model,
        tools=[step],
        model_settings=ModelSettings(max_output_tokens=10),
    )


def _runtime(store: Store, limit: str = "0.02") -> Tether:
    return Tether(
        store=store,
        budgets=[Budget.per_run(Decimal(limit))],
        prices={"m": PRICE},
        budget_exhausted="wait",
    )


async def test_an_exhausted_budget_waits_for_a_raise_then_goes_on(store: Store) -> None:
    script = [_costly(call("step", {"n": i})) for i in (1, 2, 3)] + [_costly("walked")]
    model = ScriptedModel(script, name="m")
    runtime = _runtime(store)

    waiting = await runtime.run(_agent(model), "walk", user="ana")
    assert waiting.status is RunStatus.WAITING_APPROVAL
    assert waiting.error is not None and waiting.error.error_class == "budget_exceeded"
    key = f"run:{waiting.run_id}"
    assert f"tether budgets raise {key}" in waiting.error.message
    assert len(model.requests) == 2, "the third call was refused before it was made"
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.WAITING_APPROVAL
    assert record.lease_owner is None
    with pytest.raises(RunStateError, match="raise budget"):
        await runtime.resume(waiting.run_id, agent=_agent(model))

    woken = await runtime.raise_budget(key, by_usd=Decimal("0.02"), raised_by="bob")
    assert woken == [waiting.run_id]
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.PENDING

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and result.output == "walked"
    assert len(model.requests) == 4
    assert runtime.budgets is not None
    [window] = [w for w in await runtime.budgets.book.usage() if w.budget == key]
    assert window.limit_usd == Decimal("0.04") and window.spent_usd == Decimal("0.04")
    events = await store.events(waiting.run_id)
    kinds = [e.kind for e in events if isinstance(e, BudgetExhausted | BudgetRaised)]
    assert kinds == ["budget_exhausted", "budget_raised"]
    rows = [(r.action, r.actor) for r in await audit_log(store).entries()]
    assert ("budget_raised", "bob") in rows

    replayed = await runtime.replay(waiting.run_id, agent=_agent(model))
    assert replayed.output == "walked" and len(model.requests) == 4


async def test_a_raise_too_small_waits_again(store: Store) -> None:
    script = [_costly(call("step", {"n": 1})), _costly("done")]
    model = ScriptedModel(script, name="m")
    runtime = _runtime(store, limit="0.005")  # not even the first call fits
    waiting = await runtime.run(_agent(model), "walk", user="ana")
    assert waiting.status is RunStatus.WAITING_APPROVAL and model.requests == []
    key = f"run:{waiting.run_id}"

    await runtime.raise_budget(key, by_usd=Decimal("0.001"), raised_by="bob")
    again = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert again.status is RunStatus.WAITING_APPROVAL and model.requests == []
    attempts = [
        e.attempt for e in await store.events(waiting.run_id) if isinstance(e, BudgetExhausted)
    ]
    assert attempts == [1, 2]

    await runtime.raise_budget(key, by_usd=Decimal("1"), raised_by="bob")
    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED


async def test_end_stays_the_default(store: Store) -> None:
    model = ScriptedModel([_costly("never")], name="m")
    runtime = Tether(store=store, budgets=[Budget.per_run(Decimal("0.001"))], prices={"m": PRICE})
    result = await runtime.run(_agent(model), "walk")
    assert result.status is RunStatus.BUDGET_EXCEEDED


async def test_bad_raises_are_refused(store: Store) -> None:
    model = ScriptedModel([_costly("x")], name="m")
    runtime = _runtime(store, limit="0.001")
    waiting = await runtime.run(_agent(model), "walk")
    key = f"run:{waiting.run_id}"
    for amount in (Decimal("0"), Decimal("-1"), Decimal("NaN"), Decimal("0.0000001")):
        with pytest.raises(ConfigurationError):
            await runtime.raise_budget(key, by_usd=amount, raised_by="bob")
    with pytest.raises(ConfigurationError, match="no budget window"):
        await runtime.raise_budget("user:nobody:day", by_usd=Decimal("1"), raised_by="bob")
    with pytest.raises(ConfigurationError, match="budget_exhausted"):
        Tether(store=store, budget_exhausted="pause")  # type: ignore[arg-type]
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.WAITING_APPROVAL


def test_cli_raise(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def seed() -> str:
        store = SqliteStore(path)
        waiting = await _runtime(store, limit="0.001").run(
            _agent(ScriptedModel([_costly("x")], name="m")), "walk"
        )
        await store.close()
        return waiting.run_id

    run_id = asyncio.run(seed())
    runner = CliRunner()
    bad = runner.invoke(
        app, ["budgets", "raise", f"run:{run_id}", "--by", "lots", "--store", str(path)]
    )
    assert bad.exit_code == 2
    raised = runner.invoke(
        app,
        ["budgets", "raise", f"run:{run_id}", "--by", "0.5", "--as", "bob", "--store", str(path)],
    )
    assert raised.exit_code == 0, raised.output
    assert f"run {run_id} is pending again" in raised.stdout
    shown = runner.invoke(app, ["budgets", "--json", "--store", str(path)])
    [window] = json.loads(shown.stdout)
    assert window["limit_usd"] == "0.501"
