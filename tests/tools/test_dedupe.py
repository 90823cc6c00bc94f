"""Cross-run idempotency: a repeated call inside the window is answered, not run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tether import Agent, Tether, ToolCallFinished, tool
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import Dedupe

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return InMemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "d.db")


def payments() -> tuple[Any, list[dict[str, Any]]]:
    made: list[dict[str, Any]] = []

    @tool(
        risk="external",
        effect="idempotent",
        dedupe=Dedupe(
            ttl=timedelta(minutes=10),
            key=lambda a: {k: v for k, v in a.items() if k != "nonce"},
        ),
    )
    def pay(to: str, cents: int, nonce: str) -> dict[str, Any]:
        """Pay someone.

        Args:
            to: Who.
            cents: How much.
            nonce: A random value the model adds.
        """
        made.append({"to": to, "cents": cents})
        return {"payment": len(made), "to": to}

    return pay, made


async def pay_once(store: Store, pay: Any, nonce: str, *, cents: int = 500) -> ToolCallFinished:
    model = ScriptedModel([call("pay", {"to": "ana", "cents": cents, "nonce": nonce}), "ok"])
    result = await Tether(store=store).run(Agent(name="p", model=model, tools=[pay]), "pay")
    (finished,) = [e for e in await store.events(result.run_id) if isinstance(e, ToolCallFinished)]
    return finished


async def test_a_repeat_from_another_run_reuses_the_result(store: Store) -> None:
    pay, made = payments()
    first = await pay_once(store, pay, "n-1")
    second = await pay_once(store, pay, "n-2")
    assert made == [{"to": "ana", "cents": 500}], "the payment was made once"
    assert second.content == first.content and not second.executed
    assert second.dedupe_of == first.run_id and first.dedupe_of is None


async def test_different_arguments_are_a_different_call(store: Store) -> None:
    pay, made = payments()
    await pay_once(store, pay, "n-1")
    other = await pay_once(store, pay, "n-1", cents=700)
    assert len(made) == 2 and other.dedupe_of is None and other.executed


async def test_outside_the_window_the_call_runs_again() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    pay, made = payments()
    await pay_once(store, pay, "n-1")
    clock.advance(timedelta(minutes=11))
    again = await pay_once(store, pay, "n-2")
    assert len(made) == 2 and again.dedupe_of is None


async def test_failures_are_not_remembered(store: Store) -> None:
    attempts: list[int] = []

    @tool(dedupe=Dedupe(ttl=timedelta(minutes=1)))
    def flaky(q: str) -> str:
        """Sometimes down.

        Args:
            q: Query.
        """
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("down")
        return "fine"

    for _ in range(3):
        model = ScriptedModel([call("flaky", {"q": "x"}), "ok"])
        await Tether(store=store).run(Agent(name="f", model=model, tools=[flaky]), "go")
    assert len(attempts) == 2, "the failure ran again; the success was then reused"


async def test_the_reused_result_survives_resume_from_the_journal(store: Store) -> None:
    pay, made = payments()
    await pay_once(store, pay, "n-1")
    model = ScriptedModel([call("pay", {"to": "ana", "cents": 500, "nonce": "n-9"}), "ok"])
    agent = Agent(name="p", model=model, tools=[pay])
    result = await Tether(store=store).run(agent, "pay")
    replayed = await Tether(store=store).replay(result.run_id, agent=agent)
    assert replayed.status.value == "completed" and len(made) == 1
