from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tether import Agent, ModelSettings, RunStatus
from tether.errors import ConfigurationError
from tether.governance.budgets import (
    AppliedBudget,
    Budget,
    BudgetBook,
    Budgets,
    Denied,
    MemoryBudgetBook,
    Reservation,
    SqliteBudgetBook,
    budget_book,
    input_estimate,
)
from tether.messages import ModelResponse, UserMessage
from tether.models import Price
from tether.runtime import Tether
from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock, ScriptedModel

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def usd(text: str) -> Decimal:
    return Decimal(text)


def applied(budget: Budget, user: str = "ana", run_id: str = "r1") -> AppliedBudget:
    return AppliedBudget(key=budget.key(run_id=run_id, user=user, agent="a"), budget=budget)


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
def book(store: Store) -> BudgetBook:
    return budget_book(store)


async def totals(book: BudgetBook) -> dict[str, tuple[Decimal, Decimal]]:
    return {w.budget: (w.spent_usd, w.reserved_usd) for w in await book.usage()}


# --- values ------------------------------------------------------------------------


def test_keys_name_scope_subject_and_window() -> None:
    assert Budget.per_user(usd("1"), window=DAY).key(run_id="r", user="ana", agent="a") == (
        "user:ana:day"
    )
    assert Budget.global_(usd("5"), window=HOUR).key(run_id="r", user="x", agent="a") == (
        "global:hour"
    )
    assert Budget.per_run(usd("0.3")).key(run_id="r9", user=None, agent="a") == "run:r9"
    assert Budget.per_agent(usd("1"), window=timedelta(seconds=90)).key(
        run_id="r", user=None, agent="bot"
    ) == ("agent:bot:90s")
    assert Budget.per_user(usd("1")).key(run_id="r", user=None, agent="a") == "user:-"
    assert Budget.per_user(usd("1"), name="month").key(run_id="r", user="b", agent="a") == (
        "user:b:month"
    )


@pytest.mark.parametrize(
    ("limit", "window", "name"),
    [
        (Decimal(-1), None, None),
        (Decimal("NaN"), None, None),
        (Decimal(1), timedelta(milliseconds=10), None),
        (Decimal(1), None, "a:b"),
        (Decimal(1), None, ""),
    ],
)
def test_bad_budgets_are_refused(
    limit: Decimal, window: timedelta | None, name: str | None
) -> None:
    with pytest.raises(ConfigurationError):
        Budget.per_user(limit, window=window, name=name)


def test_limit_as_float_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Budget.per_user(1.0)  # type: ignore[arg-type]


def test_window_start_is_aligned_on_the_epoch() -> None:
    budget = Budget.global_(usd("1"), window=HOUR)
    assert budget.window_start(7200.0) == 7200.0
    assert budget.window_start(7199.9) == 3600.0
    assert Budget.per_run(usd("1")).window_start(12345.6) == 0.0


def test_duplicate_window_keys_are_refused() -> None:
    store = InMemoryStore()
    with pytest.raises(ConfigurationError):
        Budgets([Budget.per_user(usd("1"), window=DAY)] * 2, budget_book(store))
    with pytest.raises(ConfigurationError):
        Budgets([], budget_book(store), assumed_output_tokens=0)


def test_budget_book_picks_the_store_kind(tmp_path: Path) -> None:
    assert isinstance(budget_book(InMemoryStore()), MemoryBudgetBook)
    assert isinstance(budget_book(SqliteStore(tmp_path / "x.db")), SqliteBudgetBook)
    with pytest.raises(ConfigurationError):
        budget_book(object())  # type: ignore[arg-type]


def test_input_estimate_is_a_third_of_the_utf8_bytes() -> None:
    assert input_estimate([UserMessage(content="abcdef")], ()) == 2
    assert input_estimate([UserMessage(content="é")], ()) == 1  # 2 bytes, rounded up


# --- the book -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_reserve_then_settle_charges_actual_and_releases_the_rest(book: BudgetBook) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    ticket = await book.reserve("r1", 1, usd("0.40"), [day])
    assert isinstance(ticket, Reservation)
    assert await totals(book) == {"user:ana:day": (usd("0"), usd("0.4"))}
    settled = await book.settle(ticket, usd("0.1"))
    assert (settled.charged_micros, settled.released_micros) == (100_000, 300_000)
    assert not settled.clamped and not settled.late
    [window] = await book.usage()
    assert (window.spent_usd, window.reserved_usd, window.remaining_usd) == (
        usd("0.1"),
        usd("0"),
        usd("0.9"),
    )
    assert window.as_json()["remaining_usd"] == "0.9"


@pytest.mark.anyio
async def test_reserve_is_all_or_nothing_and_names_the_tightest(book: BudgetBook) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    hour = applied(Budget.global_(usd("0.5"), window=HOUR))
    run = applied(Budget.per_run(usd("0.3")))
    assert isinstance(await book.reserve("r1", 1, usd("0.25"), [day, hour, run]), Reservation)
    denied = await book.reserve("r1", 1, usd("0.3"), [day, hour, run])
    assert isinstance(denied, Denied)
    assert denied.budget == "run:r1"  # 0.05 left, tighter than the hour's 0.25
    assert denied.remaining_usd == usd("0.05")
    assert "run:r1" in denied.message
    assert await totals(book) == {
        "user:ana:day": (usd("0"), usd("0.25")),
        "global:hour": (usd("0"), usd("0.25")),
        "run:r1": (usd("0"), usd("0.25")),
    }


@pytest.mark.anyio
async def test_exactly_the_limit_fits_and_one_micro_more_does_not(book: BudgetBook) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    assert isinstance(await book.reserve("r1", 1, usd("0.999999"), [day]), Reservation)
    assert isinstance(await book.reserve("r1", 1, usd("0.000002"), [day]), Denied)
    assert isinstance(await book.reserve("r1", 1, usd("0.000001"), [day]), Reservation)


@pytest.mark.anyio
async def test_zero_limit_admits_only_free_calls(book: BudgetBook) -> None:
    zero = applied(Budget.per_user(usd("0"), window=DAY))
    assert isinstance(await book.reserve("r1", 1, usd("0"), [zero]), Reservation)
    assert isinstance(await book.reserve("r1", 1, usd("0.000001"), [zero]), Denied)


@pytest.mark.anyio
async def test_settle_above_the_reservation_is_clamped_and_noted(
    book: BudgetBook, caplog: pytest.LogCaptureFixture
) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    ticket = await book.reserve("r1", 1, usd("0.1"), [day])
    assert isinstance(ticket, Reservation)
    settled = await book.settle(ticket, usd("0.5"))
    assert settled.clamped and settled.charged_micros == 100_000
    assert "cost more than its reservation" in caplog.text
    assert await totals(book) == {"user:ana:day": (usd("0.1"), usd("0"))}


@pytest.mark.anyio
async def test_release_frees_everything_and_twice_is_harmless(book: BudgetBook) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    ticket = await book.reserve("r1", 1, usd("0.7"), [day])
    assert isinstance(ticket, Reservation)
    await book.release(ticket)
    await book.release(ticket)
    assert await totals(book) == {"user:ana:day": (usd("0"), usd("0"))}


@pytest.mark.anyio
async def test_settle_after_release_charges_late(
    book: BudgetBook, caplog: pytest.LogCaptureFixture
) -> None:
    day = applied(Budget.per_user(usd("1"), window=DAY))
    ticket = await book.reserve("r1", 1, usd("0.5"), [day])
    assert isinstance(ticket, Reservation)
    await book.release(ticket)
    settled = await book.settle(ticket, usd("0.2"))
    assert settled.late and settled.released_micros == 0
    assert "already released" in caplog.text
    assert await totals(book) == {"user:ana:day": (usd("0.2"), usd("0"))}


@pytest.mark.anyio
async def test_release_lapsed_frees_reservations_of_runs_without_their_lease(
    store: Store, book: BudgetBook
) -> None:
    from tether.events import RunStarted

    def started(run_id: str) -> RunStarted:
        return RunStarted(
            run_id=run_id, agent="a", user=None, task="t", at=datetime(2026, 1, 1, tzinfo=UTC)
        )

    live = await store.create_run(started("live"), owner="w", lease_for=timedelta(hours=1))
    gone = await store.create_run(started("gone"), owner="w", lease_for=timedelta(hours=1))
    assert live is not None and gone is not None
    day = Budget.per_user(usd("1"), window=DAY)
    kept = await book.reserve("live", live.epoch, usd("0.1"), [applied(day, run_id="live")])
    stale = await book.reserve("gone", gone.epoch, usd("0.2"), [applied(day, run_id="gone")])
    orphan = await book.reserve("nobody", 1, usd("0.3"), [applied(day, run_id="nobody")])
    old_epoch = await book.reserve("live", live.epoch - 1, usd("0.05"), [applied(day)])
    assert all(isinstance(t, Reservation) for t in (kept, stale, orphan, old_epoch))
    await store.release(gone)
    assert await book.release_lapsed() == 3
    assert await totals(book) == {"user:ana:day": (usd("0"), usd("0.1"))}
    assert await book.release_lapsed() == 0


@pytest.mark.anyio
async def test_spend_is_charged_to_the_window_it_was_reserved_in() -> None:
    clock = FakeClock(datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC))
    book = budget_book(InMemoryStore(clock=clock))
    day = applied(Budget.per_user(usd("1"), window=DAY))
    ticket = await book.reserve("r1", 1, usd("0.9"), [day])
    assert isinstance(ticket, Reservation)
    clock.advance(2)  # the call ends on the next day
    await book.settle(ticket, usd("0.8"))
    fresh = await book.reserve("r1", 1, usd("1"), [day])
    assert isinstance(fresh, Reservation)  # the new day starts empty
    usage = {w.window_start.day: (w.spent_usd, w.reserved_usd) for w in await book.usage()}
    assert usage == {1: (usd("0.8"), usd("0")), 2: (usd("0"), usd("1"))}


# --- through the runtime ------------------------------------------------------------


def _response(text: str, cost: str | None) -> ModelResponse:
    return ModelResponse(text=text, cost_usd=None if cost is None else Decimal(cost))


@pytest.mark.anyio
async def test_a_run_is_charged_and_a_denied_run_ends_budget_exceeded(store: Store) -> None:
    price = Price(input=Decimal(1), output=Decimal(1000))  # $0.001 per output token
    agent = Agent(
        name="a",
        model=ScriptedModel([_response("first", "0.05")], name="m"),
        model_settings=ModelSettings(max_output_tokens=100),  # worst case ~$0.10
    )
    budgets = [Budget.per_user(usd("0.12"), window=DAY)]
    runtime = Tether(store=store, budgets=budgets, prices={"m": price})
    first = await runtime.run(agent, "hi", user="ana")
    assert first.status is RunStatus.COMPLETED
    second = await runtime.run(agent, "hi", user="ana")
    assert second.status is RunStatus.BUDGET_EXCEEDED
    assert second.error is not None and "user:ana:day" in second.error.message
    assert second.error.error_class == "budget_exceeded"
    assert second.output == "first" or second.output is None
    assert runtime.budgets is not None
    [window] = await runtime.budgets.book.usage()
    assert (window.spent_usd, window.reserved_usd) == (usd("0.05"), usd("0"))
    limits = [e for e in await store.events(second.run_id) if type(e).__name__ == "LimitHit"]
    assert [getattr(e, "limit", None) for e in limits] == ["user:ana:day"]
    from tether.governance.audit import audit_log

    log = audit_log(store)
    denials = [e for e in await log.entries() if e.action == "budget_denied"]
    assert [(e.run_id, e.subject, e.actor) for e in denials] == [
        (second.run_id, "user:ana:day", "ana")
    ], "each denial is exactly one audit row naming the window"
    assert (await log.verify()).ok


@pytest.mark.anyio
async def test_an_unknown_price_is_refused_never_free(store: Store) -> None:
    model = ScriptedModel(["never"], name="mystery")
    agent = Agent(name="a", model=model)
    runtime = Tether(store=store, budgets=[Budget.global_(usd("100"))], prices={})
    result = await runtime.run(agent, "hi")
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert result.error is not None and "no price" in result.error.message
    assert model.requests == []


@pytest.mark.anyio
async def test_a_failed_call_releases_its_reservation(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    agent = Agent(name="a", model=ScriptedModel([], name="m"))  # runs out: ModelError
    runtime = Tether(
        store=store,
        budgets=[Budget.global_(usd("1"))],
        prices={"m": Price(input=Decimal(1), output=Decimal(1))},
    )
    result = await runtime.run(agent, "hi")
    assert result.status is RunStatus.FAILED
    [window] = await budget_book(store).usage()
    assert (window.spent_usd, window.reserved_usd) == (usd("0"), usd("0"))
    await store.close()


@pytest.mark.anyio
async def test_an_unknown_cost_charges_the_whole_reservation() -> None:
    store = InMemoryStore()
    agent = Agent(
        name="a",
        model=ScriptedModel([_response("ok", None)], name="m"),
        model_settings=ModelSettings(max_output_tokens=10),
    )
    runtime = Tether(
        store=store,
        budgets=[Budget.global_(usd("1"))],
        prices={"m": Price(input=Decimal(0), output=Decimal(1000))},
    )
    assert (await runtime.run(agent, "hi")).status is RunStatus.COMPLETED
    assert runtime.budgets is not None
    [window] = await runtime.budgets.book.usage()
    assert window.spent_usd == usd("0.01")


# --- the command line ---------------------------------------------------------------


def test_cli_budgets_shows_windows_and_releases_lapsed(tmp_path: Path) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from tether.cli.main import app

    path = tmp_path / "t.db"

    async def seed() -> None:
        store = SqliteStore(path)
        book = budget_book(store)
        day = applied(Budget.per_user(usd("1"), window=DAY))
        ticket = await book.reserve("gone", 1, usd("0.4"), [day])
        assert isinstance(ticket, Reservation)
        spent = await book.reserve("gone", 1, usd("0.3"), [day])
        assert isinstance(spent, Reservation)
        await book.settle(spent, usd("0.25"))
        await store.close()

    asyncio.run(seed())
    runner = CliRunner()
    shown = runner.invoke(app, ["budgets", "--json", "--store", str(path)])
    assert shown.exit_code == 0, shown.output
    [window] = json.loads(shown.stdout)
    assert window["budget"] == "user:ana:day"
    assert (window["spent_usd"], window["reserved_usd"], window["remaining_usd"]) == (
        "0.25",
        "0",
        "0.75",
    )
    text = runner.invoke(app, ["budgets", "--store", str(path)])
    assert text.exit_code == 0 and "remaining $0.75" in text.stdout
    empty = runner.invoke(app, ["budgets", "--store", str(tmp_path / "new.db")])
    assert empty.exit_code == 0 and "no budget windows" in empty.stdout


@pytest.mark.anyio
async def test_a_worker_releases_reservations_of_runs_that_lost_their_lease(
    store: Store,
) -> None:
    from tether.events import RunStarted
    from tether.worker import Worker

    runtime = Tether(store=store, budgets=[Budget.per_user(usd("1"), window=DAY)], prices={})
    assert runtime.budgets is not None
    book = runtime.budgets.book
    started = RunStarted(
        run_id="dead", agent="a", user=None, task="t", at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    lease = await store.create_run(started, owner="gone", lease_for=timedelta(hours=1))
    assert lease is not None
    day = Budget.per_user(usd("1"), window=DAY)
    ticket = await book.reserve("dead", lease.epoch, usd("0.4"), [applied(day, run_id="dead")])
    assert isinstance(ticket, Reservation)
    await store.release(lease)  # its worker gave the run up without settling
    await Worker(runtime, concurrency=1, poll_interval=0.01).run(until_idle=True)
    assert await totals(book) == {"user:ana:day": (usd("0"), usd("0"))}
