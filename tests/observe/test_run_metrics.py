"""Per-run metrics from journals, kept in the store; user feedback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tether import Agent, RunLimits, RunStatus
from tether.errors import ConfigurationError, RunNotFoundError
from tether.messages import ModelResponse, Usage
from tether.observe.feedback import feedback_book
from tether.observe.runs import run_metrics, run_metrics_book
from tether.runtime import Tether
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio


@tool(risk="read")
def lookup(name: str) -> str:
    """Look up a name.

    Args:
        name: The name.
    """
    if name == "bad":
        raise ValueError("no")
    return "ok"


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = (
        InMemoryStore(clock=FakeClock())
        if request.param == "memory"
        else SqliteStore(tmp_path / "t.db")
    )
    yield made
    await made.close()


def _priced(item: object, cost: str | None, degraded: bool = False) -> ModelResponse:
    usage = Usage(input_tokens=10, output_tokens=5)
    price = None if cost is None else Decimal(cost)
    if isinstance(item, str):
        return ModelResponse(text=item, usage=usage, cost_usd=price, degraded=degraded)
    return ModelResponse(tool_calls=tuple(item), usage=usage, cost_usd=price, degraded=degraded)  # type: ignore[arg-type]


async def test_metrics_are_computed_from_the_journal_and_kept(store: Store) -> None:
    runtime = Tether(store=store)
    calls = [call("lookup", {"name": "a"}), call("lookup", {"name": "bad"})]
    model = ScriptedModel([_priced(calls, "0.25", degraded=True), _priced("done", "0.5")], name="m")
    result = await runtime.run(Agent(name="a", model=model, tools=[lookup]), "go", user="ana")
    metrics = run_metrics(await store.events(result.run_id))
    assert metrics is not None
    assert (metrics.agent, metrics.user, metrics.status) == ("a", "ana", RunStatus.COMPLETED)
    assert (metrics.steps, metrics.tool_calls, metrics.tool_errors) == (4, 2, 1)
    assert (metrics.input_tokens, metrics.output_tokens) == (20, 10)
    assert metrics.cost_usd == Decimal("0.75") and metrics.degraded
    assert metrics.escalations == 0 and metrics.error_class is None

    unknown = ScriptedModel([_priced("x", None)], name="m")
    capped = ScriptedModel([call("lookup", {"name": "a"})] * 3, name="m")
    await runtime.run(Agent(name="b", model=unknown), "go")
    await runtime.run(
        Agent(name="c", model=capped, tools=[lookup], limits=RunLimits(max_steps=1, wrap_up=False)),
        "go",
    )

    book = run_metrics_book(store)
    assert await book.catch_up() == 3
    assert await book.catch_up() == 0  # idempotent
    kept = {m.agent: m for m in await book.recorded()}
    assert kept["a"] == metrics
    assert kept["b"].cost_usd is None
    assert kept["c"].status is RunStatus.MAX_STEPS and kept["c"].error_class == "max_steps"
    assert [m.agent for m in await book.recorded(agent="c")] == ["c"]


async def test_an_unfinished_run_has_no_metrics(store: Store) -> None:
    run_id = await Tether(store=store).submit(Agent(name="a", model=ScriptedModel([])), "go")
    assert run_metrics(await store.events(run_id)) is None
    assert run_metrics([]) is None
    assert await run_metrics_book(store).catch_up() == 0


async def test_feedback_is_kept_and_checked(store: Store) -> None:
    result = await Tether(store=store).run(Agent(name="a", model=ScriptedModel(["hi"])), "go")
    book = feedback_book(store)
    await book.record(result.run_id, 2, comment="slow", by="ana")
    kept = await book.record(result.run_id, 4, by="ana")
    assert (await book.get(result.run_id)) == kept and kept.score == 4
    assert [f.score for f in await book.all()] == [4]
    for bad in (0, 6, 3.5, True):
        with pytest.raises(ConfigurationError):
            await book.record(result.run_id, bad)  # type: ignore[arg-type]
    with pytest.raises(RunNotFoundError):
        await book.record("run_missing", 3)
