"""RetryPolicy: what is retried, how often, how long it waits, and when it gives up."""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable, Sequence

import pytest

from tether.errors import ConfigurationError, ModelError, TetherError, ToolError
from tether.resilience import RetryAttempt, RetryPolicy
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


def failure(error_class: str = "server_error", *, retry_after: float | None = None) -> ModelError:
    return ModelError(error_class, error_class=error_class, retryable=True, retry_after=retry_after)


class Flaky:
    """Raises the given errors one per call, then returns ``"ok"``."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> Awaitable[str]:
        self.calls += 1
        return self._attempt()

    async def _attempt(self) -> str:
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retryable_errors_are_retried_until_success() -> None:
    clock = FakeClock()
    fn = Flaky([failure("overloaded"), failure("timeout"), failure("stream_truncated")])
    assert await RetryPolicy().call(fn, clock=clock, rng=random.Random(1)) == "ok"
    assert fn.calls == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [
        ModelError("no", error_class="auth_error", retryable=False),
        ModelError("no", error_class="context_too_long"),
        ToolError("no"),
        ConfigurationError("no"),
        TetherError("open", error_class="circuit_open", retryable=False),
    ],
)
async def test_non_retryable_errors_propagate_at_once(error: TetherError) -> None:
    clock = FakeClock()
    fn = Flaky([error])
    with pytest.raises(TetherError) as raised:
        await RetryPolicy().call(fn, clock=clock)
    assert raised.value is error
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("error", [ValueError("bug"), TimeoutError(), OSError("reset")])
async def test_other_exceptions_are_never_retried(error: Exception) -> None:
    fn = Flaky([error])
    with pytest.raises(type(error)) as raised:
        await RetryPolicy().call(fn, clock=FakeClock())
    assert raised.value is error
    assert fn.calls == 1


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_at_most_max_attempts_then_the_last_error(max_attempts: int) -> None:
    errors = [failure() for _ in range(10)]
    fn = Flaky(errors)
    clock = FakeClock()
    with pytest.raises(ModelError) as raised:
        await RetryPolicy(max_attempts=max_attempts).call(fn, clock=clock)
    assert fn.calls == max_attempts
    assert raised.value is errors[max_attempts - 1]
    assert len(clock.sleeps) == max_attempts - 1


async def test_waits_are_at_least_retry_after() -> None:
    clock = FakeClock()
    fn = Flaky([failure("rate_limited", retry_after=7.0), failure("rate_limited", retry_after=3.5)])
    await RetryPolicy().call(fn, clock=clock, rng=random.Random(0))
    assert clock.sleeps[0] >= 7.0
    assert clock.sleeps[1] >= 3.5


async def test_a_retry_after_past_the_deadline_fails_fast() -> None:
    clock = FakeClock()
    limited = failure("rate_limited", retry_after=120.0)
    fn = Flaky([limited])
    with pytest.raises(ModelError) as raised:
        await RetryPolicy(deadline=60.0).call(fn, clock=clock)
    assert raised.value is limited
    assert raised.value.error_class == "rate_limited"
    assert fn.calls == 1
    assert clock.sleeps == []
    assert clock.monotonic() == 0.0


async def test_the_deadline_counts_from_the_first_attempt() -> None:
    clock = FakeClock()
    errors = [failure("rate_limited", retry_after=25.0) for _ in range(3)]
    fn = Flaky(errors)
    with pytest.raises(ModelError) as raised:
        await RetryPolicy(deadline=60.0, jitter="none").call(fn, clock=clock)
    # Two waits of 25 s fit in 60 s; a third would end at 75 s.
    assert clock.sleeps == [25.0, 25.0]
    assert raised.value is errors[2]
    assert clock.monotonic() <= 60.0


async def test_time_spent_in_attempts_counts_against_the_deadline() -> None:
    clock = FakeClock()
    errors = [failure(), failure()]

    async def slow() -> str:
        clock.advance(59.0)
        if errors:
            raise errors.pop(0)
        return "ok"

    with pytest.raises(ModelError):
        await RetryPolicy(deadline=60.0, initial_delay=2.0, jitter="none").call(slow, clock=clock)
    assert clock.sleeps == []


async def test_no_deadline() -> None:
    clock = FakeClock()
    fn = Flaky([failure("rate_limited", retry_after=3600.0)])
    assert await RetryPolicy(deadline=None).call(fn, clock=clock) == "ok"
    assert clock.sleeps == [3600.0]


async def test_first_retry_delays_are_spread_across_clients() -> None:
    delays = []
    for seed in range(100):
        clock = FakeClock()
        await RetryPolicy().call(Flaky([failure()]), clock=clock, rng=random.Random(seed))
        delays.append(clock.sleeps[0])
    assert statistics.pstdev(delays) / statistics.mean(delays) > 0.3
    assert all(0.0 <= d <= 0.5 for d in delays)


async def test_on_retry_reports_each_retry() -> None:
    seen: list[RetryAttempt] = []
    clock = FakeClock()
    fn = Flaky([failure("overloaded"), failure("rate_limited", retry_after=2.0)])
    policy = RetryPolicy(jitter="none", initial_delay=1.0)
    await policy.call(fn, clock=clock, on_retry=seen.append)
    assert seen == [
        RetryAttempt(attempt=1, error_class="overloaded", delay=1.0),
        RetryAttempt(attempt=2, error_class="rate_limited", delay=2.0),
    ]
    assert clock.sleeps == [1.0, 2.0]


async def test_no_report_when_giving_up() -> None:
    seen: list[RetryAttempt] = []
    fn = Flaky([failure(), failure()])
    with pytest.raises(ModelError):
        await RetryPolicy(max_attempts=2).call(fn, clock=FakeClock(), on_retry=seen.append)
    assert [a.attempt for a in seen] == [1]


async def test_errors_of_earlier_attempts_are_not_chained() -> None:
    errors = [failure("timeout"), failure("server_error")]
    with pytest.raises(ModelError) as raised:
        await RetryPolicy(max_attempts=2).call(Flaky(errors), clock=FakeClock())
    assert raised.value.__context__ is None


def test_backoff_grows_to_max_delay_without_jitter() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=3.0, jitter="none")
    rng = random.Random(0)
    assert [policy.delay(n, failure(), rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff_cap(10_000) == 3.0  # no overflow


def test_full_jitter_stays_within_the_cap_and_above_retry_after() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt in range(1, 8):
        cap = policy.backoff_cap(attempt)
        assert 0.0 <= policy.delay(attempt, failure(), rng) <= cap
        assert policy.delay(attempt, failure(retry_after=40.0), rng) == 40.0
    with pytest.raises(ValueError, match="attempt"):
        policy.delay(0, failure(), rng)


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay) == (5, 0.5, 30.0)
    assert (policy.multiplier, policy.deadline, policy.jitter) == (2.0, 60.0, "full")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an int"),
        ({"max_attempts": True}, "max_attempts must be an int"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"initial_delay": float("nan")}, "initial_delay"),
        ({"max_delay": 0.1}, "max_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"deadline": 0}, "deadline must be finite and greater than 0"),
        ({"deadline": -5.0}, "deadline"),
        ({"deadline": "60"}, "deadline must be a number"),
        ({"jitter": "equal"}, "jitter"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_a_frozen_keyword_only_value() -> None:
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(AttributeError):
        policy.max_attempts = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]
    assert policy == RetryPolicy(max_attempts=3)


async def test_policies_compose_with_any_async_callable() -> None:
    calls: list[int] = []

    async def request(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise failure()
        return n * 2

    fn: Callable[[], Awaitable[int]] = lambda: request(21)  # noqa: E731
    assert await RetryPolicy().call(fn, clock=FakeClock()) == 42
    assert calls == [21, 21]
