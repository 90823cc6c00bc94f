"""Property: over any sequence of calls, outcomes and elapsed time, the breaker behaves
like a small reference model, never admits a call while open, admits exactly
``half_open_probes`` probes when half-open, and is never opened by ``rate_limited``."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tether.errors import ModelError
from tether.resilience import (
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
    CircuitOpenError,
)
from tether.testing import FakeClock

Outcome = Literal["success", "counted", "rate_limited", "uncounted"]


@dataclass(frozen=True)
class Config:
    window: int
    minimum_calls: int
    failure_rate: float
    consecutive_failures: int | None
    reset_timeout: float
    half_open_probes: int


@dataclass
class Reference:
    """The breaker's rules written out plainly, with ``epoch`` as the ticket."""

    config: Config
    state: str = "closed"
    opened: float = 0.0
    history: list[bool] = field(default_factory=list)  # every counted outcome since closing
    run: int = 0
    probes: int = 0
    epoch: int = 0

    def move(self, state: str) -> None:
        self.state = state
        self.epoch += 1

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.opened + self.config.reset_timeout:
            self.probes = 0
            self.move("half_open")

    def admit(self, now: float) -> int | None:
        self.tick(now)
        if self.state == "closed":
            return self.epoch
        if self.state == "half_open" and self.probes < self.config.half_open_probes:
            self.probes += 1
            return self.epoch
        return None

    def trips(self) -> bool:
        if self.config.consecutive_failures is not None and (
            self.run >= self.config.consecutive_failures
        ):
            return True
        recent = self.history[-self.config.window :]
        if len(recent) < self.config.minimum_calls:
            return False
        return Fraction(sum(recent), len(recent)) >= Fraction(self.config.failure_rate)

    def finish(self, now: float, ticket: int, outcome: Outcome) -> None:
        self.tick(now)
        if ticket != self.epoch:
            return
        if self.state == "closed":
            if outcome == "success":
                self.history.append(False)
                self.run = 0
            elif outcome == "counted":
                self.history.append(True)
                self.run += 1
                if self.trips():
                    self.opened = now
                    self.move("open")
        elif self.state == "half_open":
            if outcome == "success":
                self.history, self.run, self.probes = [], 0, 0
                self.move("closed")
            elif outcome == "counted":
                self.opened, self.probes = now, 0
                self.move("open")
            else:
                self.probes -= 1


configs = st.builds(
    lambda window, minimum, rate, run, reset, probes: Config(
        window=window,
        minimum_calls=min(minimum, window),
        failure_rate=rate,
        consecutive_failures=run,
        reset_timeout=reset,
        half_open_probes=probes,
    ),
    window=st.integers(1, 8),
    minimum=st.integers(1, 8),
    rate=st.sampled_from([0.25, 0.5, 0.6, 1.0]),
    run=st.one_of(st.none(), st.integers(1, 4)),
    reset=st.sampled_from([5.0, 10.0, 30.0]),
    probes=st.integers(1, 3),
)
outcomes = st.sampled_from(["success", "counted", "counted", "rate_limited", "uncounted"])
# A call that ends at once; a call left in flight (a concurrent probe attempt); the end of
# one call in flight; time passing (including exactly each reset timeout).
call = st.tuples(st.just("call"), outcomes)
start = st.just(("start",))
finish = st.tuples(st.just("finish"), st.integers(0, 7), outcomes)
advance = st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 4.0, 5.0, 10.0, 30.0]))
operations = st.lists(
    st.one_of(call, call, call, start, finish, advance, advance), min_size=10, max_size=50
)

PROBE_ENDS = {
    "success": BreakerState.CLOSED,
    "counted": BreakerState.OPEN,
    "rate_limited": BreakerState.HALF_OPEN,
    "uncounted": BreakerState.HALF_OPEN,
}


def exception(outcome: Outcome) -> BaseException:
    if outcome == "counted":
        return ModelError("down", error_class="server_error", retryable=True)
    if outcome == "rate_limited":
        return ModelError("slow down", error_class="rate_limited", retryable=True)
    return ValueError("a bug in the caller, not the endpoint")


class Harness:
    """Drives a real breaker and the reference side by side and checks them after each step."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = FakeClock()
        self.changes: list[tuple[float, BreakerStateChanged]] = []
        self.breaker = CircuitBreaker(
            "endpoint",
            clock=self.clock,
            window=config.window,
            minimum_calls=config.minimum_calls,
            failure_rate=config.failure_rate,
            consecutive_failures=config.consecutive_failures,
            reset_timeout=config.reset_timeout,
            half_open_probes=config.half_open_probes,
            on_state_change=lambda c: self.changes.append((self.clock.monotonic(), c)),
        )
        self.model = Reference(config)
        self.in_flight: list[tuple[int, bool]] = []  # (ticket, admitted as a probe)

    def live_probes(self) -> int:
        epoch = self.model.epoch
        return sum(probe and ticket == epoch for ticket, probe in self.in_flight)

    def start(self) -> tuple[int, bool] | None:
        expected = self.model.admit(self.clock.monotonic())
        try:
            ticket = self.breaker.before_call()
        except CircuitOpenError:
            assert expected is None
            if self.breaker.state is BreakerState.HALF_OPEN:  # refused: all slots taken
                assert self.live_probes() == self.config.half_open_probes
            return None
        assert ticket == expected
        self.assert_not_open_before_reset()
        call = (ticket, self.breaker.state is BreakerState.HALF_OPEN)
        self.in_flight.append(call)
        assert self.live_probes() <= self.config.half_open_probes
        return call

    def finish(self, call: tuple[int, bool], outcome: Outcome) -> None:
        self.in_flight.remove(call)
        ticket, probe = call
        live_probe = probe and ticket == self.model.epoch
        changed = len(self.changes)
        self.model.finish(self.clock.monotonic(), ticket, outcome)
        if outcome == "success":
            self.breaker.record_success(ticket=ticket)
        else:
            self.breaker.record_failure(exception(outcome), ticket=ticket)
        if outcome in ("rate_limited", "uncounted"):  # never opens or closes it
            assert len(self.changes) == changed
        if live_probe:
            event(f"probe ended: {outcome}")
            assert self.breaker.state is PROBE_ENDS[outcome]

    def check(self) -> None:
        self.model.tick(self.clock.monotonic())
        snapshot = self.breaker.snapshot()
        recent = self.model.history[-self.config.window :]
        assert snapshot.state.value == self.model.state
        assert snapshot.probes_in_flight == self.model.probes
        assert snapshot.consecutive_failures == self.model.run
        assert snapshot.calls == len(recent)
        assert snapshot.failure_rate == (sum(recent) / len(recent) if recent else 0.0)

    def assert_not_open_before_reset(self) -> None:
        """A call was just admitted: it is closed, or half-open after a full timeout."""
        if not self.changes:
            return
        at, last = self.changes[-1]
        assert last.state is not BreakerState.OPEN
        if last.state is BreakerState.HALF_OPEN:
            opened = max(t for t, c in self.changes if c.state is BreakerState.OPEN)
            assert at - opened >= self.config.reset_timeout


@settings(max_examples=120, deadline=None)
@given(config=configs, ops=operations)
def test_breaker_matches_the_reference_model(config: Config, ops: list[tuple[object, ...]]) -> None:
    harness = Harness(config)
    for op in ops:
        harness.model.tick(harness.clock.monotonic())
        match op:
            case ("advance", float(seconds)):
                harness.clock.advance(seconds)
            case ("start",):
                harness.start()
            case ("call", outcome):
                call = harness.start()
                if call is not None:
                    harness.finish(call, outcome)  # type: ignore[arg-type]
            case ("finish", int(index), outcome) if harness.in_flight:
                call = harness.in_flight[index % len(harness.in_flight)]
                harness.finish(call, outcome)  # type: ignore[arg-type]
        harness.check()
    assert all(c.previous is not c.state for _, c in harness.changes)
