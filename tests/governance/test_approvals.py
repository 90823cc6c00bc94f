from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tether.errors import ConfigurationError, RunStateError
from tether.governance.approvals import (
    ApprovalPolicy,
    Approvals,
    ApprovalStatus,
    Verdict,
    approvals,
)
from tether.governance.audit import audit_log, hash_arguments
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock
from tether.tools import Tool, tool

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)
PAY = {"amount": 120, "to": "acme"}


@tool(risk="read")
def lookup(query: str) -> str:
    """Look something up.

    Args:
        query: What to look for.
    """
    return query


@tool(risk="write", effect="idempotent")
def update(name: str, amount: float = 0) -> str:
    """Update a record.

    Args:
        name: The record.
        amount: A number.
    """
    return name


@tool(risk="external", effect="at_most_once")
def pay(amount: float, to: str) -> str:
    """Pay someone.

    Args:
        amount: How much.
        to: Whom.
    """
    return to


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = (
        InMemoryStore(clock=FakeClock())
        if request.param == "memory"
        else SqliteStore(tmp_path / "t.db")
    )
    yield made
    await made.close()


@pytest.fixture
def book(store: Store) -> Approvals:
    return approvals(store)


async def actions(store: Store) -> list[str]:
    return [e.action for e in await audit_log(store).entries()]


# --- policy -----------------------------------------------------------------------------


def test_read_tools_act_and_risky_tools_ask() -> None:
    policy = ApprovalPolicy()
    assert policy.decide(lookup, {"query": "x"}) == Verdict(ask=False, reasons=())
    assert not policy.decide(update, {"name": "x"}).ask
    verdict = policy.decide(pay, PAY)
    assert verdict.ask and verdict.reasons == ("tool 'pay' has risk external",)
    assert ApprovalPolicy(ask_for_risks=frozenset({"write"})).decide(update, {"name": "x"}).ask  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "ask"), [(99, False), (100, False), (100.5, True), (1000, True), ("lots", True)]
)
def test_thresholds_ask_only_over_the_limit(amount: Any, ask: bool) -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset(), thresholds={"amount": 100})
    verdict = policy.decide(update, {"name": "x", "amount": amount})
    assert verdict.ask is ask
    if ask:
        assert "'amount'" in verdict.reasons[0]
    assert not policy.decide(update, {"name": "x"}).ask  # missing: nothing to compare


def test_named_tools_always_ask() -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset(), ask_for_tools=frozenset({"update"}))
    assert policy.decide(update, {"name": "x"}) == Verdict(
        ask=True, reasons=("tool 'update' always needs approval",)
    )
    assert not policy.decide(pay, PAY).ask  # risk alone no longer asks
    with pytest.raises(ConfigurationError):
        ApprovalPolicy(ask_for_tools="update")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ApprovalPolicy(ask_for_tools=frozenset({""}))


def test_keywords_match_any_string_case_insensitively() -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset(), keywords=("delete", "wire"))
    assert not policy.decide(lookup, {"query": "read the report"}).ask
    verdict = policy.decide(lookup, {"query": "DELETE the report"})
    assert verdict.reasons == ("an argument contains 'delete'",)
    nested = {"query": "x", "extra": {"items": ["ok", "Wire $5"]}}
    assert policy.decide(lookup, nested).reasons == ("an argument contains 'wire'",)


def test_low_confidence_asks() -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset(), min_confidence=0.8)
    assert not policy.decide(lookup, {"query": "x"}).ask
    assert not policy.decide(lookup, {"query": "x"}, confidence=0.8).ask
    verdict = policy.decide(lookup, {"query": "x"}, confidence=0.5)
    assert verdict.ask and "0.5" in verdict.reasons[0]
    ignoring = ApprovalPolicy(ask_for_risks=frozenset())
    assert not ignoring.decide(lookup, {"query": "x"}, confidence=0.0).ask


def test_reasons_add_up() -> None:
    policy = ApprovalPolicy(thresholds={"amount": 100}, keywords=("acme",), min_confidence=0.9)
    assert len(policy.decide(pay, PAY, confidence=0.1).reasons) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ask_for_risks": frozenset({"dangerous"})},
        {"thresholds": {"amount": "100"}},
        {"thresholds": {"amount": float("nan")}},
        {"thresholds": {"amount": True}},
        {"thresholds": {"": 1}},
        {"keywords": ("",)},
        {"keywords": "delete"},
        {"min_confidence": 1.5},
        {"min_confidence": -0.1},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ApprovalPolicy(**kwargs)


@pytest.mark.parametrize("confidence", [-1.0, 2.0, float("nan")])
def test_bad_confidence_is_refused(confidence: float) -> None:
    with pytest.raises(ConfigurationError, match="confidence"):
        ApprovalPolicy().decide(lookup, {"query": "x"}, confidence=confidence)


def test_policy_is_frozen_and_normalised() -> None:
    policy = ApprovalPolicy(ask_for_risks=frozenset({"irreversible"}), keywords=["all"])  # type: ignore[arg-type]
    assert policy.keywords == ("all",)
    with pytest.raises(AttributeError):
        policy.min_confidence = 0.3  # type: ignore[misc]
    assert isinstance(pay, Tool)


# --- requests ---------------------------------------------------------------------------


async def test_request_is_idempotent_per_step(store: Store, book: Approvals) -> None:
    first = await book.request("run_1", 3, "pay", PAY, ttl=TTL, reasons=["risk external"])
    assert first.status is ApprovalStatus.PENDING
    assert first.args_hash == hash_arguments(PAY) and first.reasons == ("risk external",)
    again = await book.request("run_1", 3, "pay", PAY, ttl=TTL)
    assert again == first
    assert await book.get(first.approval_id) == first
    assert await book.get("nope") is None
    other = await book.request("run_1", 4, "pay", PAY, ttl=TTL)
    assert {r.approval_id for r in await book.pending()} == {first.approval_id, other.approval_id}
    assert await actions(store) == ["approval_requested", "approval_requested"]


@pytest.mark.parametrize(
    ("run_id", "step", "tool_name", "ttl"),
    [
        ("", 1, "pay", TTL),
        ("run_1", -1, "pay", TTL),
        ("run_1", 1, "", TTL),
        ("run_1", 1, "pay", timedelta(0)),
        ("run_1", 1, "pay", timedelta(seconds=-1)),
    ],
)
async def test_bad_requests_are_refused(
    book: Approvals, run_id: str, step: int, tool_name: str, ttl: timedelta
) -> None:
    with pytest.raises(ConfigurationError):
        await book.request(run_id, step, tool_name, PAY, ttl=ttl)


async def test_approve_then_consume_once(store: Store, book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    assert not (await book.consume("run_1", 1, "pay", PAY)).allowed  # still pending
    decided = await book.decide(made.approval_id, approve=True, approver="ana", comment="ok")
    assert decided.status is ApprovalStatus.APPROVED
    assert decided.decided_by == "ana" and decided.comment == "ok" and decided.decided_at
    assert await book.pending() == []
    used = await book.consume("run_1", 1, "pay", dict(reversed(list(PAY.items()))))
    assert used.allowed and used.approval_id == made.approval_id and "ana" in used.reason
    second = await book.consume("run_1", 1, "pay", PAY)
    assert not second.allowed and "already used" in second.reason
    found = await book.get(made.approval_id)
    assert found is not None and found.status is ApprovalStatus.USED
    assert await actions(store) == [
        "approval_requested",
        "deny",
        "approved",
        "privileged_call",
        "deny",
    ]


async def test_an_approval_binds_its_tool_and_arguments(book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    await book.decide(made.approval_id, approve=True, approver="ana")
    other = await book.consume("run_1", 1, "pay", {**PAY, "amount": 121})
    assert not other.allowed and "other arguments" in other.reason
    wrong_tool = await book.consume("run_1", 1, "refund", PAY)
    assert not wrong_tool.allowed and "'refund'" in wrong_tool.reason
    missing = await book.consume("run_1", 2, "pay", PAY)
    assert not missing.allowed and missing.approval_id is None
    assert not (await book.consume("run_2", 1, "pay", PAY)).allowed
    assert (await book.consume("run_1", 1, "pay", PAY)).allowed  # the approval survived


async def test_deny(store: Store, book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    denied = await book.decide(made.approval_id, approve=False, approver="bob", comment="no")
    assert denied.status is ApprovalStatus.DENIED
    refused = await book.consume("run_1", 1, "pay", PAY)
    assert not refused.allowed and "denied by bob" in refused.reason
    with pytest.raises(RunStateError, match="already denied"):
        await book.decide(made.approval_id, approve=True, approver="ana")
    assert (await actions(store))[1:] == ["denied", "deny"]


async def test_bad_decisions_are_refused(store: Store, book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    with pytest.raises(ConfigurationError, match="no approval request"):
        await book.decide("nope", approve=True, approver="ana")
    with pytest.raises(ConfigurationError, match="approver"):
        await book.decide(made.approval_id, approve=True, approver="")
    with pytest.raises(ConfigurationError, match="collection"):
        await book.decide(made.approval_id, approve=True, approver="ana", roles="finance")
    await book.decide(made.approval_id, approve=True, approver="ana")
    with pytest.raises(RunStateError, match="already approved"):
        await book.decide(made.approval_id, approve=False, approver="ana")


async def test_the_required_role_is_checked(store: Store, book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    with pytest.raises(ConfigurationError, match="role 'finance' is required"):
        await book.decide(
            made.approval_id, approve=True, approver="eve", roles=["ops"], required_role="finance"
        )
    still = await book.get(made.approval_id)
    assert still is not None and still.status is ApprovalStatus.PENDING
    entries = await audit_log(store).entries()
    assert entries[-1].action == "deny" and entries[-1].actor == "eve"
    decided = await book.decide(
        made.approval_id, approve=True, approver="ana", roles={"finance"}, required_role="finance"
    )
    assert decided.status is ApprovalStatus.APPROVED


async def test_audit_rows_name_the_run_and_hash_the_arguments(
    store: Store, book: Approvals
) -> None:
    made = await book.request("run_1", 7, "pay", PAY, ttl=TTL, reasons=["big"])
    await book.decide(made.approval_id, approve=True, approver="ana")
    await book.consume("run_1", 7, "pay", PAY)
    entries = await audit_log(store).entries(run_id="run_1")
    assert [(e.action, e.step, e.subject) for e in entries] == [
        ("approval_requested", 7, "pay"),
        ("approved", 7, "pay"),
        ("privileged_call", 7, "pay"),
    ]
    assert entries[0].args_hash == hash_arguments(PAY) and "big" in (entries[0].reason or "")
    assert entries[1].actor == "ana" and entries[2].actor == "ana"
    assert (await audit_log(store).verify()).ok


# --- expiry -----------------------------------------------------------------------------


async def test_expired_requests_are_not_honoured_in_memory() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    book = approvals(store)
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    late = await book.request("run_1", 2, "pay", PAY, ttl=TTL)
    await book.decide(made.approval_id, approve=True, approver="ana")
    clock.advance(TTL)
    assert await book.pending() == []
    seen = await book.get(made.approval_id)
    assert seen is not None and seen.status is ApprovalStatus.EXPIRED
    refused = await book.consume("run_1", 1, "pay", PAY)
    assert not refused.allowed and "expired" in refused.reason
    assert not (await book.consume("run_1", 1, "pay", PAY)).allowed
    with pytest.raises(RunStateError, match="expired"):
        await book.decide(late.approval_id, approve=True, approver="ana")
    with pytest.raises(RunStateError, match="expired"):
        await book.decide(late.approval_id, approve=True, approver="ana")
    assert await book.request("run_1", 2, "pay", PAY, ttl=TTL) == await book.get(late.approval_id)
    assert await actions(store) == [
        "approval_requested",
        "approval_requested",
        "approved",
        "expired",  # the consume that found it lapsed
        "deny",  # the second consume: already expired
        "expired",  # decide of the lapsed request, once
    ]


async def test_expired_requests_can_be_asked_again() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    book = approvals(store, expired_means_denied=False)
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    assert await book.request("run_1", 1, "pay", PAY, ttl=TTL) == made
    clock.advance(TTL)
    fresh = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    assert fresh.approval_id != made.approval_id and fresh.status is ApprovalStatus.PENDING
    assert await book.get(made.approval_id) is None
    await book.decide(fresh.approval_id, approve=True, approver="ana")
    assert (await book.consume("run_1", 1, "pay", PAY)).allowed


async def test_expired_requests_are_not_honoured_in_sqlite(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    try:
        book = approvals(store)
        short = timedelta(milliseconds=200)
        made = await book.request("run_1", 1, "pay", PAY, ttl=short)
        late = await book.request("run_1", 2, "pay", PAY, ttl=short)
        await book.decide(made.approval_id, approve=True, approver="ana")
        await asyncio.sleep(0.3)
        assert await book.pending() == []
        refused = await book.consume("run_1", 1, "pay", PAY)
        assert not refused.allowed and "expired" in refused.reason
        with pytest.raises(RunStateError, match="expired"):
            await book.decide(late.approval_id, approve=True, approver="ana")
        for approval_id in (made.approval_id, late.approval_id):
            found = await book.get(approval_id)
            assert found is not None and found.status is ApprovalStatus.EXPIRED
        renewing = approvals(store, expired_means_denied=False)
        fresh = await renewing.request("run_1", 2, "pay", PAY, ttl=TTL)
        assert fresh.status is ApprovalStatus.PENDING and fresh.approval_id != late.approval_id
        assert (await actions(store)).count("expired") == 2
    finally:
        await store.close()


# --- concurrency ------------------------------------------------------------------------


async def test_two_consumers_of_one_approval_one_wins(store: Store, book: Approvals) -> None:
    made = await book.request("run_1", 1, "pay", PAY, ttl=TTL)
    await book.decide(made.approval_id, approve=True, approver="ana")
    answers = await asyncio.gather(*(book.consume("run_1", 1, "pay", PAY) for _ in range(5)))
    assert sum(a.allowed for a in answers) == 1
    assert (await actions(store)).count("privileged_call") == 1


async def test_two_stores_on_one_file_one_wins(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "t.db"), SqliteStore(tmp_path / "t.db")
    try:
        made = await approvals(first).request("run_1", 1, "pay", PAY, ttl=TTL)
        await approvals(second).decide(made.approval_id, approve=True, approver="ana")
        answers = await asyncio.gather(
            approvals(first).consume("run_1", 1, "pay", PAY),
            approvals(second).consume("run_1", 1, "pay", PAY),
        )
        assert sorted(a.allowed for a in answers) == [False, True]
    finally:
        await first.close()
        await second.close()


async def test_stores_without_approvals_are_refused() -> None:
    class Other:
        pass

    with pytest.raises(ConfigurationError, match="keeps no approvals"):
        approvals(Other())  # type: ignore[arg-type]
