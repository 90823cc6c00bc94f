"""CircuitBreaker: examples of each transition, the async wrapper and the snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from tether.errors import ModelError, TetherError
from tether.resilience import (
    BreakerSnapshot,
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    counts_as_failure,
)
from tether.testing import FakeClock

START = datetime(2026, 1, 1, tzinfo=UTC)


def error(error_class: str) -> ModelError:
    return ModelError(error_class, error_class=error_class, retryable=True)


def fail(breaker: CircuitBreaker, error_class: str = "server_error", times: int = 1) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure(error(error_class))


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_success()


def test_opens_after_consecutive_failures() -> None:
    breaker = CircuitBreaker("p", clock=FakeClock())
    fail(breaker, times=4)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_opens_on_the_failure_rate_of_the_window() -> None:
    breaker = CircuitBreaker("p", clock=FakeClock(), consecutive_failures=None, minimum_calls=5)
    for _ in range(2):
        succeed(breaker)
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 2 of 4, below minimum_calls
    fail(breaker)
    assert breaker.state is BreakerState.OPEN  # 3 of 5 >= 0.5


def test_old_outcomes_leave_the_window() -> None:
    breaker = CircuitBreaker("p", clock=FakeClock(), window=4, minimum_calls=4, failure_rate=0.75)
    fail(breaker, times=2)
    succeed(breaker, times=4)
    fail(breaker, times=2)
    assert breaker.snapshot().failure_rate == 0.5
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "error_class", ["rate_limited", "bad_request", "context_too_long", "auth_error"]
)
def test_uncounted_errors_never_open_it(error_class: str) -> None:
    breaker = CircuitBreaker("p", clock=FakeClock())
    fail(breaker, error_class, times=100)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().calls == 0


def test_uncounted_errors_do_not_break_a_run_of_failures() -> None:
    breaker = CircuitBreaker("p", clock=FakeClock(), consecutive_failures=3)
    fail(breaker)
    fail(breaker, "rate_limited")
    fail(breaker)
    fail(breaker, "rate_limited")
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_default_predicate() -> None:
    for counted in ["server_error", "overloaded", "timeout", "connection_error"]:
        assert counts_as_failure(error(counted))
    for counted in ["stream_truncated", "invalid_response"]:
        assert counts_as_failure(error(counted))
    for uncounted in ["rate_limited", "quota_exhausted", "bad_request", "model_error"]:
        assert not counts_as_failure(error(uncounted))
    assert not counts_as_failure(TimeoutError())
    assert counts_as_failure(TetherError("x", error_class="timeout"))


def test_open_refuses_until_reset_timeout_then_admits_one_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("openai:gpt", clock=clock, reset_timeout=30.0)
    fail(breaker, times=5)
    clock.advance(29.5)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.before_call()
    assert refused.value.error_class == "circuit_open"
    assert refused.value.retryable is False
    assert refused.value.breaker == "openai:gpt"
    assert refused.value.retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()
    with pytest.raises(CircuitOpenError) as busy:
        breaker.before_call()
    assert busy.value.retry_after is None


def test_a_successful_probe_closes_it_with_an_empty_window() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock)
    fail(breaker, times=5)
    clock.advance(30)
    succeed(breaker)
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.CLOSED
    assert (snapshot.calls, snapshot.consecutive_failures, snapshot.opened_at) == (0, 0, None)
    fail(breaker, times=4)
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_it_for_a_new_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, reset_timeout=10.0)
    fail(breaker, times=5)
    clock.advance(10)
    fail(breaker, "timeout")
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().opened_at == START.replace(second=10)
    clock.advance(9.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_an_uncounted_probe_failure_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock)
    fail(breaker, times=5)
    clock.advance(30)
    fail(breaker, "rate_limited")
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().probes_in_flight == 0
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_several_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, half_open_probes=3)
    fail(breaker, times=5)
    clock.advance(30)
    for _ in range(3):
        breaker.before_call()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    assert breaker.snapshot().probes_in_flight == 3
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_late_outcomes_while_open_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=1)
    breaker.before_call()  # a slow call, admitted while closed
    fail(breaker)
    breaker.record_success()
    assert breaker.state is BreakerState.OPEN
    clock.advance(30)
    breaker.record_success()  # half-open, but no probe was admitted
    assert breaker.state is BreakerState.HALF_OPEN


def test_tickets_keep_slow_calls_from_posing_as_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=1)
    slow_ok = breaker.before_call()
    slow_cancelled = breaker.before_call()
    fail(breaker)
    clock.advance(30)
    probe = breaker.before_call()
    breaker.record_failure(TimeoutError(), ticket=slow_cancelled)
    breaker.record_success(ticket=slow_ok)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().probes_in_flight == 1
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_success(ticket=probe)
    assert breaker.state is BreakerState.CLOSED


def test_state_changes_are_reported() -> None:
    clock = FakeClock()
    changes: list[BreakerStateChanged] = []
    breaker = CircuitBreaker("p", clock=clock, on_state_change=changes.append)
    fail(breaker, times=5)
    clock.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN
    fail(breaker)
    clock.advance(30)
    succeed(breaker)
    assert [(c.previous.value, c.state.value) for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert changes[0].at == START
    assert changes[-1].at == START.replace(minute=1)
    assert all(c.name == "p" for c in changes)


def test_snapshot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=None, minimum_calls=10)
    succeed(breaker, times=3)
    fail(breaker)
    assert breaker.snapshot() == BreakerSnapshot(
        name="p",
        state=BreakerState.CLOSED,
        failure_rate=0.25,
        calls=4,
        consecutive_failures=1,
        opened_at=None,
        probes_in_flight=0,
    )
    assert repr(breaker) == "CircuitBreaker('p', state=closed)"
    assert breaker.window == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"minimum_calls": 21}, "must not exceed window"),
        ({"failure_rate": 0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"window": 2.0}, "window must be an int"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker("p", clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_call_records_outcomes_and_skips_calls_while_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=2)
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise error("overloaded")

    for _ in range(2):
        with pytest.raises(ModelError):
            await breaker.call(down)
    with pytest.raises(CircuitOpenError):
        await breaker.call(down)
    assert calls == 2

    async def up() -> str:
        return "ok"

    clock.advance(30)
    assert await breaker.call(up) == "ok"
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_a_probe_in_flight_blocks_others_and_a_cancelled_probe_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=1)
    fail(breaker)
    clock.advance(30)
    started = anyio.Event()

    async def hang() -> str:
        started.set()
        await anyio.sleep_forever()
        return "never"

    async with anyio.create_task_group() as group:
        group.start_soon(breaker.call, hang)
        await started.wait()
        with pytest.raises(CircuitOpenError):
            await breaker.call(hang)
        group.cancel_scope.cancel()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().probes_in_flight == 0


@pytest.mark.anyio
async def test_retry_stops_at_an_open_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=2)
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise error("server_error")

    with pytest.raises(CircuitOpenError):
        await RetryPolicy().call(lambda: breaker.call(down), clock=clock)
    assert calls == 2
    assert len(clock.sleeps) == 2
