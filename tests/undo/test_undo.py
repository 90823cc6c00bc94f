"""Undo: compensations in reverse order, journaled, idempotent, irreversible effects reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether import Agent, Compensation, RunStatus, Tether, ToolCallFinished, tool
from tether.errors import RunStateError
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import ScriptedModel, call
from tether.undo import undo

pytestmark = pytest.mark.anyio


class Bank:
    def __init__(self) -> None:
        self.balance = 100
        self.log: list[str] = []
        self.fail_refunds = 0


def make(bank: Bank) -> list[Any]:
    def refund(c: Compensation) -> None:
        bank.log.append(f"refund {c.arguments['amount']} (step {c.step}, result {c.result})")
        if bank.fail_refunds:
            bank.fail_refunds -= 1
            raise ConnectionError("bank is down")
        bank.balance += c.arguments["amount"]

    @tool(risk="external", effect="idempotent", compensate=refund)
    def charge(amount: int) -> dict[str, int]:
        """Charge money.

        Args:
            amount: Dollars.
        """
        bank.balance -= amount
        bank.log.append(f"charge {amount}")
        return {"charged": amount}

    @tool(risk="irreversible")
    def email(to: str) -> str:
        """Send an email.

        Args:
            to: Address.
        """
        bank.log.append(f"email {to}")
        return "sent"

    @tool
    def look(q: str) -> str:
        """Read only.

        Args:
            q: Query.
        """
        return q

    return [charge, email, look]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Store:
    return InMemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "u.db")


async def finished_run(store: Store, bank: Bank) -> tuple[str, Agent[str]]:
    script = [
        call("charge", {"amount": 10}),
        call("look", {"q": "x"}),
        call("email", {"to": "a@b.c"}),
        call("charge", {"amount": 5}),
        call("charge", {"amount": 999999999, "bad": 1}),
        "done",
    ]
    agent = Agent(name="shop", model=ScriptedModel(script), tools=make(bank))
    result = await Tether(store=store).run(agent, "buy")
    assert result.status is RunStatus.COMPLETED and bank.balance == 85
    return result.run_id, agent


async def test_compensations_run_newest_first_and_irreversible_effects_are_reported(
    store: Store,
) -> None:
    bank = Bank()
    run_id, agent = await finished_run(store, bank)
    report = await undo(Tether(store=store), run_id, agent=agent)
    assert bank.balance == 100
    assert [(s.step, s.tool, s.outcome) for s in report.steps] == [
        (8, "charge", "undone"),
        (6, "email", "irreversible"),
        (2, "charge", "undone"),
    ]
    assert report.complete and [s.step for s in report.irreversible] == [6]
    assert bank.log[-2:] == [
        "refund 5 (step 8, result {'charged': 5})",
        "refund 10 (step 2, result {'charged': 10})",
    ]
    undo_journal = await store.events(report.undo_run_id)
    kinds = [e.kind for e in undo_journal]
    assert kinds == [
        "run_started",
        *["tool_call_started", "tool_call_finished"] * 2,
        "run_finished",
    ]
    record = await store.get_run(report.undo_run_id)
    assert record is not None and record.status is RunStatus.COMPLETED
    assert record.agent == f"undo:{run_id}"


async def test_undo_is_idempotent(store: Store) -> None:
    bank = Bank()
    run_id, agent = await finished_run(store, bank)
    await undo(Tether(store=store), run_id, agent=agent)
    again = await undo(Tether(store=store), run_id, agent=agent)
    assert bank.balance == 100, "nothing was refunded twice"
    assert [s.message for s in again.steps if s.outcome == "undone"] == ["in an earlier undo"] * 2


async def test_a_failed_compensation_is_reported_and_retried_by_the_next_undo(
    store: Store,
) -> None:
    bank = Bank()
    run_id, agent = await finished_run(store, bank)
    bank.fail_refunds = 1
    first = await undo(Tether(store=store), run_id, agent=agent)
    assert not first.complete
    assert [(s.step, s.outcome) for s in first.steps] == [
        (8, "failed"),
        (6, "irreversible"),
        (2, "undone"),
    ]
    assert "bank is down" in first.steps[0].message and bank.balance == 95
    record = await store.get_run(first.undo_run_id)
    assert record is not None and record.status is RunStatus.FAILED
    second = await undo(Tether(store=store), run_id, agent=agent)
    assert second.complete and bank.balance == 100


async def test_an_undo_cut_short_is_finished_by_the_next_one(store: Store) -> None:
    bank = Bank()
    run_id, agent = await finished_run(store, bank)

    class Crash(BaseException):
        pass

    calls = {"n": 0}
    (charge, *_rest) = agent.tools
    original = charge.compensate
    assert original is not None

    def crashing(c: Compensation) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash
        original(c)

    object.__setattr__(charge, "compensate", crashing)
    with pytest.raises(Crash):
        await undo(Tether(store=store), run_id, agent=agent)
    assert bank.balance == 90, "the newest charge was refunded before the crash"
    object.__setattr__(charge, "compensate", original)
    report = await undo(Tether(store=store), run_id, agent=agent)
    assert report.complete and bank.balance == 100
    runs = await store.list_runs(agent=f"undo:{run_id}")
    assert sorted(r.status.value for r in runs) == ["cancelled", "completed"]
    cancelled = next(r for r in runs if r.status is RunStatus.CANCELLED)
    orphans = [e for e in await store.events(cancelled.run_id) if isinstance(e, ToolCallFinished)]
    assert len(orphans) == 2, "the crashed compensation got a result: no orphan in the journal"


async def test_to_step_limits_the_undo(store: Store) -> None:
    bank = Bank()
    run_id, agent = await finished_run(store, bank)
    report = await undo(Tether(store=store), run_id, agent=agent, to_step=7)
    assert [s.step for s in report.steps] == [8] and bank.balance == 90


async def test_only_finished_runs_can_be_undone() -> None:
    store = InMemoryStore()
    runtime = Tether(store=store)
    bank = Bank()
    agent = Agent(name="shop", model=ScriptedModel(["x"]), tools=make(bank))
    run_id = await runtime.submit(agent, "buy")
    with pytest.raises(RunStateError, match="cancel it"):
        await undo(runtime, run_id, agent=agent)


async def test_a_run_without_effects_has_nothing_to_undo() -> None:
    store = InMemoryStore()
    agent = Agent(
        name="r", model=ScriptedModel([call("look", {"q": "x"}), "ok"]), tools=make(Bank())
    )
    result = await Tether(store=store).run(agent, "go")
    report = await undo(Tether(store=store), result.run_id, agent=agent)
    assert report.steps == () and report.complete
    summary = await store.events(report.undo_run_id)
    assert json.loads(summary[-1].output or "[]") == []  # type: ignore[union-attr]
