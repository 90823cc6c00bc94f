"""Approvals in runs: a call the policy picks waits for a person, then runs once or never."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tether import Agent, RunStatus
from tether.errors import ConfigurationError, RunStateError
from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    ToolCallFinished,
    ToolCallStarted,
)
from tether.governance.approvals import ApprovalPolicy, ApprovalStatus, approvals
from tether.governance.audit import audit_log
from tether.governance.permissions import permissions
from tether.messages import ToolResultMessage
from tether.runtime import Tether
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio

paid: list[tuple[int, str]] = []
looked: list[str] = []


@tool(risk="external", effect="at_most_once")
def pay(amount: int, to: str) -> str:
    """Pay someone.

    Args:
        amount: Dollars.
        to: Whom.
    """
    paid.append((amount, to))
    return f"paid {amount} to {to}"


@tool(risk="read")
def lookup(name: str) -> str:
    """Look a payee up.

    Args:
        name: The payee.
    """
    looked.append(name)
    return f"{name} is a known payee"


POLICY = ApprovalPolicy(ttl=timedelta(minutes=10))


@pytest.fixture(autouse=True)
def _reset() -> None:
    paid.clear()
    looked.clear()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = (
        InMemoryStore(clock=FakeClock())
        if request.param == "memory"
        else SqliteStore(tmp_path / "t.db")
    )
    yield made
    await made.close()


def _agent(model: ScriptedModel, policy: ApprovalPolicy | None = POLICY) -> Agent[str]:
    return Agent(name="payer", model=model, tools=[pay, lookup], approvals=policy)


def _finished(events: list[Event] | tuple[Event, ...]) -> dict[int, ToolCallFinished]:
    return {e.step: e for e in events if isinstance(e, ToolCallFinished)}


def _results(model: ScriptedModel) -> list[ToolResultMessage]:
    return [m for m in model.requests[-1].messages if isinstance(m, ToolResultMessage)]


async def test_an_approved_call_waits_then_runs_once(store: Store) -> None:
    model = ScriptedModel([call("pay", {"amount": 120, "to": "acme"}), "paid"], name="m")
    runtime = Tether(store=store)
    waiting = await runtime.run(_agent(model), "pay acme", user="ana")

    assert waiting.status is RunStatus.WAITING_APPROVAL
    assert waiting.error is not None and waiting.error.error_class == "approval_required"
    assert paid == []
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.WAITING_APPROVAL
    assert record.lease_owner is None  # the worker is free
    [request] = await runtime.pending_approvals()
    assert request.approval_id in waiting.error.message and request.tool == "pay"
    events = list(await store.events(waiting.run_id))
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    with pytest.raises(RunStateError, match=request.approval_id):
        await runtime.resume(waiting.run_id, agent=_agent(model))

    decided = await runtime.approve(request.approval_id, approver="bob", comment="ok")
    assert decided.status is ApprovalStatus.APPROVED
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.PENDING

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and result.output == "paid"
    assert paid == [(120, "acme")]
    assert (await approvals(store).get(request.approval_id)).status is ApprovalStatus.USED  # type: ignore[union-attr]
    actions = [r.action for r in await audit_log(store).entries(run_id=waiting.run_id)]
    assert actions == ["approval_requested", "approved", "privileged_call"]
    events = list(await store.events(waiting.run_id))
    kinds = [e.kind for e in events]
    assert kinds.index("approval_requested") < kinds.index("approval_decided")
    assert kinds.index("approval_decided") < kinds.index("tool_call_started")

    # The finished run replays from its journal alone: no request, no spend, no call.
    rows = len(await audit_log(store).entries())
    replayed = await runtime.replay(waiting.run_id, agent=_agent(model))
    assert replayed.output == "paid" and paid == [(120, "acme")]
    assert len(await audit_log(store).entries()) == rows


async def test_a_denied_call_never_runs_and_the_model_is_told_why(store: Store) -> None:
    model = ScriptedModel([call("pay", {"amount": 9000, "to": "mallory"}), "I will not pay."])
    runtime = Tether(store=store)
    waiting = await runtime.run(_agent(model), "pay", user="ana")
    [request] = await runtime.pending_approvals()
    with pytest.raises(ConfigurationError, match="reason"):
        await runtime.deny(request.approval_id, approver="bob", reason=" ")
    await runtime.deny(request.approval_id, approver="bob", reason="unknown payee")

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and paid == []
    [answer] = _results(model)
    body = json.loads(answer.content)
    assert answer.is_error and body["error"] == "approval_denied"
    assert "bob" in body["message"] and "unknown payee" in body["message"]
    finished = _finished(await store.events(waiting.run_id))
    [denied] = finished.values()
    assert not denied.executed and denied.error_class == "approval_denied"
    assert not any(isinstance(e, ToolCallStarted) for e in await store.events(waiting.run_id))
    with pytest.raises(RunStateError, match="already denied"):
        await runtime.approve(request.approval_id, approver="carol")


async def test_a_mixed_batch_leaves_no_call_without_a_result(store: Store) -> None:
    batch = [
        call("pay", {"amount": 10, "to": "a"}, id="c1"),
        call("lookup", {"name": "b"}, id="c2"),
        call("pay", {"amount": 20, "to": "b"}, id="c3"),
    ]
    model = ScriptedModel([batch, "done"], name="m")
    runtime = Tether(store=store)
    waiting = await runtime.run(_agent(model), "pay both", user="ana")
    assert waiting.status is RunStatus.WAITING_APPROVAL
    assert looked == [] and paid == []  # nothing of the batch runs before people answer
    first, second = await runtime.pending_approvals()

    await runtime.approve(first.approval_id, approver="bob")
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.WAITING_APPROVAL  # one still waits
    await runtime.deny(second.approval_id, approver="bob", reason="too much")
    record = await store.get_run(waiting.run_id)
    assert record is not None and record.status is RunStatus.PENDING

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED
    assert paid == [(10, "a")] and looked == ["b"]
    results = _results(model)
    assert [m.call_id for m in results] == ["c1", "c2", "c3"]
    assert [m.is_error for m in results] == [False, False, True]
    assert json.loads(results[2].content)["error"] == "approval_denied"
    events = list(await store.events(waiting.run_id))
    assert len(_finished(events)) == 3
    decided = [e.outcome for e in events if isinstance(e, ApprovalDecided)]
    assert decided == ["approved", "denied"]


async def test_an_expired_request_is_a_denial() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    model = ScriptedModel([call("pay", {"amount": 5, "to": "a"}), "gave up"], name="m")
    runtime = Tether(store=store, clock=clock)
    waiting = await runtime.run(_agent(model), "pay", user="ana")
    assert await runtime.wake_expired() == 0  # still within its ten minutes
    clock.advance(timedelta(minutes=11))
    assert await runtime.pending_approvals() == []
    assert await runtime.wake_expired() == 1
    assert await runtime.wake_expired() == 0  # woken once

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and paid == []
    [answer] = _results(model)
    assert json.loads(answer.content)["error"] == "approval_expired"
    actions = [r.action for r in await audit_log(store).entries(run_id=waiting.run_id)]
    assert actions == ["approval_requested", "expired"]


async def test_an_approval_that_lapses_before_the_run_continues_is_not_honoured() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    model = ScriptedModel([call("pay", {"amount": 5, "to": "a"}), "ok"], name="m")
    runtime = Tether(store=store, clock=clock)
    policy = ApprovalPolicy(ttl=timedelta(minutes=1))
    waiting = await runtime.run(_agent(model, policy), "pay", user="ana")
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    clock.advance(timedelta(minutes=2))  # approved, but nobody continued the run in time

    result = await runtime.resume(waiting.run_id, agent=_agent(model, policy))
    assert paid == [] and result.status is RunStatus.COMPLETED
    [answer] = _results(model)
    assert json.loads(answer.content)["error"] == "approval_expired"


async def test_the_approver_role_is_enforced(store: Store) -> None:
    policy = ApprovalPolicy(approver_role="finance")
    model = ScriptedModel([call("pay", {"amount": 5, "to": "a"}), "ok"], name="m")
    runtime = Tether(store=store)
    waiting = await runtime.run(_agent(model, policy), "pay", user="ana")
    [request] = await runtime.pending_approvals()
    assert request.approver_role == "finance"
    with pytest.raises(ConfigurationError, match="finance"):
        await runtime.approve(request.approval_id, approver="ana")  # the user herself
    await permissions(store).set_roles("bob", ["finance"])
    await runtime.approve(request.approval_id, approver="bob")
    result = await runtime.resume(waiting.run_id, agent=_agent(model, policy))
    assert result.status is RunStatus.COMPLETED and paid == [(5, "a")]
    actions = [r.action for r in await audit_log(store).entries()]
    assert actions.count("deny") == 1 and "approved" in actions


async def test_calls_the_policy_lets_through_do_not_ask(store: Store) -> None:
    model = ScriptedModel([call("lookup", {"name": "x"}), "x is known"], name="m")
    result = await Tether(store=store).run(_agent(model), "who is x", user="ana")
    assert result.status is RunStatus.COMPLETED and looked == ["x"]
    assert await approvals(store).of_run(result.run_id) == []


async def test_a_refused_call_is_audited_once_across_the_pause(store: Store) -> None:
    """A permission denial in a waiting batch is journaled, not checked again on resume."""
    await permissions(store).grant("user:ana", "pay")
    batch = [call("pay", {"amount": 1, "to": "a"}, id="c1"), call("lookup", {"name": "z"}, id="c2")]
    model = ScriptedModel([batch, "done"], name="m")
    runtime = Tether(store=store, permissions=True)
    waiting = await runtime.run(_agent(model), "go", user="ana")
    assert waiting.status is RunStatus.WAITING_APPROVAL
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and paid == [(1, "a")] and looked == []
    rows = [(r.action, r.subject) for r in await audit_log(store).entries(run_id=result.run_id)]
    # The waiting call's permission is checked when it asks and again when it runs.
    assert rows == [
        ("allow", "pay"),
        ("approval_requested", "pay"),
        ("deny", "lookup"),
        ("approved", "pay"),
        ("allow", "pay"),
        ("privileged_call", "pay"),
    ]


async def test_a_grant_revoked_while_waiting_stops_the_approved_call(store: Store) -> None:
    perms = permissions(store)
    grant = await perms.grant("user:ana", "pay")
    model = ScriptedModel([call("pay", {"amount": 1, "to": "a"}), "stopped"], name="m")
    runtime = Tether(store=store, permissions=True)
    waiting = await runtime.run(_agent(model), "go", user="ana")
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    await perms.revoke(grant.grant_id)
    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and paid == []
    [answer] = _results(model)
    assert json.loads(answer.content)["error"] == "permission_denied"


async def test_a_spent_approval_survives_a_crash_before_the_intent(store: Store) -> None:
    """Spent, then the process died before the call's intent: the call runs, once."""
    model = ScriptedModel([call("pay", {"amount": 3, "to": "a"}), "ok"], name="m")
    runtime = Tether(store=store)
    waiting = await runtime.run(_agent(model), "pay", user="ana")
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    # What the crashed attempt did before dying: spend the approval.
    spent = await approvals(store).consume(
        waiting.run_id, request.step, "pay", {"amount": 3, "to": "a"}
    )
    assert spent.allowed
    again = await approvals(store).consume(
        waiting.run_id, request.step, "pay", {"amount": 3, "to": "a"}
    )
    assert not again.allowed  # outside a resume, a used approval is refused

    result = await runtime.resume(waiting.run_id, agent=_agent(model))
    assert result.status is RunStatus.COMPLETED and paid == [(3, "a")]


async def test_an_agent_with_a_policy_needs_a_store_with_approvals() -> None:
    class Proxy:
        """A store tether does not know: every call goes to an in-memory store."""

        def __init__(self, inner: Store) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    inner = InMemoryStore()
    runtime = Tether(store=Proxy(inner))  # type: ignore[arg-type]
    model = ScriptedModel(["hi"], name="m")
    with pytest.raises(ConfigurationError, match="approval"):
        await runtime.run(_agent(model), "hi")
    with pytest.raises(ConfigurationError, match="approval"):
        await runtime.submit(_agent(model), "hi")
    assert await inner.list_runs() == []  # refused before anything was stored


async def test_journal_holds_the_request_with_its_reasons(store: Store) -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset(), thresholds={"amount": 100})
    model = ScriptedModel([call("pay", {"amount": 150, "to": "a"}), "ok"], name="m")
    waiting = await Tether(store=store).run(_agent(model, policy), "pay", user="ana")
    [asked] = [e for e in await store.events(waiting.run_id) if isinstance(e, ApprovalRequested)]
    assert asked.reasons == ("argument 'amount' is 150, over the threshold 100",)
    assert asked.tool == "pay" and asked.expires_at > asked.at


@pytest.mark.parametrize(
    ("confidence", "asks"),
    [(None, False), (0.9, False), (0.5, False), (0.49, True), (float("nan"), True), (7, True)],
)
async def test_low_reported_confidence_asks(confidence: float | None, asks: bool) -> None:
    from tether.messages import ModelResponse

    policy = ApprovalPolicy(ask_for_risks=frozenset(), min_confidence=0.5)
    lookup_call = call("lookup", {"name": "x"}, id="c1")
    unsure = ModelResponse(tool_calls=(lookup_call,), confidence=confidence)
    model = ScriptedModel([unsure, "ok"], name="m")
    result = await Tether(store=InMemoryStore()).run(_agent(model, policy), "who", user="ana")
    expected = RunStatus.WAITING_APPROVAL if asks else RunStatus.COMPLETED
    assert result.status is expected
    assert looked == ([] if asks else ["x"])
