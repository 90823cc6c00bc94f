"""A state machine over reserve, settle, release, expire and time: no window overshoots."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tether.events import RunStarted
from tether.governance.budgets import AppliedBudget, Budget, Reservation, budget_book
from tether.store import InMemoryStore, Lease
from tether.testing import FakeClock

_T = TypeVar("_T")

BUDGETS = (
    Budget.per_user(Decimal("1"), window=timedelta(days=1)),
    Budget.global_(Decimal("0.5"), window=timedelta(hours=1)),
    Budget.per_user(Decimal("0.3"), window=timedelta(minutes=1), name="burst"),
)


class BudgetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.store = InMemoryStore(clock=self.clock)
        self.book = budget_book(self.store)
        self.leases: list[Lease] = []
        self.live: list[Reservation] = []
        self.started = 0

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    @rule()
    def start_run(self) -> None:
        self.started += 1
        run_id = f"r{self.started}"
        started = RunStarted(run_id=run_id, agent="a", user="ana", task="t", at=self.clock.now())
        lease = self.run(self.store.create_run(started, owner="w", lease_for=timedelta(minutes=5)))
        assert lease is not None
        self.leases.append(lease)

    @precondition(lambda self: self.leases)
    @rule(
        data=st.data(),
        micros=st.integers(0, 600_000),
        which=st.sets(st.integers(0, len(BUDGETS) - 1), min_size=1),
    )
    def reserve(self, data: st.DataObject, micros: int, which: set[int]) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        slots = [
            AppliedBudget(
                key=BUDGETS[i].key(run_id=lease.run_id, user="ana", agent="a"), budget=BUDGETS[i]
            )
            for i in sorted(which)
        ]
        ticket = self.run(
            self.book.reserve(lease.run_id, lease.epoch, Decimal(micros) / 1_000_000, slots)
        )
        if isinstance(ticket, Reservation):
            self.live.append(ticket)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), fraction=st.fractions(0, 2))
    def settle(self, data: st.DataObject, fraction: Any) -> None:
        ticket = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        actual = ticket.amount_usd * Decimal(fraction.numerator) / Decimal(fraction.denominator)
        settled = self.run(self.book.settle(ticket, actual))
        assert settled.charged_micros <= ticket.amount_micros
        assert not settled.late

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        ticket = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        self.run(self.book.release(ticket))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        """A worker dies: its lease lapses, and its reservations are reclaimed."""
        lease = data.draw(st.sampled_from(self.leases))
        self.run(self.store.release(lease))
        self.leases.remove(lease)
        self.run(self.book.release_lapsed())
        self.live = [t for t in self.live if t.run_id != lease.run_id]

    @rule(seconds=st.sampled_from([1, 59, 600, 3600, 86_400]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        lapsed = {lease.run_id for lease in self.leases if lease.expires_at <= self.clock.now()}
        self.run(self.book.release_lapsed())
        self.leases = [lease for lease in self.leases if lease.run_id not in lapsed]
        self.live = [t for t in self.live if t.run_id not in lapsed]

    @invariant()
    def nothing_overshoots_or_goes_negative(self) -> None:
        held: dict[tuple[str, float], int] = {}
        for ticket in self.live:
            for where in ticket.windows:
                held[where] = held.get(where, 0) + ticket.amount_micros
        for window in self.run(self.book.usage()):
            assert window.spent_usd >= 0 and window.reserved_usd >= 0
            assert window.spent_usd + window.reserved_usd <= window.limit_usd
            start = (window.window_start.timestamp(),)
            assert window.reserved_usd * 1_000_000 == held.get((window.budget, *start), 0)


BudgetMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
