"""The token bucket: bursts, refill, waiting in order, failing fast."""

from __future__ import annotations

import asyncio

import pytest

from tether.resilience import RateLimitedError, TokenBucket
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_a_burst_passes_then_calls_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket("t", rate=2.0, burst=3, clock=clock)
    start = clock.monotonic()
    for _ in range(3):
        await bucket.acquire()
    assert clock.monotonic() == start, "the burst needs no wait"
    await bucket.acquire()
    assert clock.monotonic() - start == pytest.approx(0.5)
    await bucket.acquire()
    assert clock.monotonic() - start == pytest.approx(1.0)


async def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket("t", rate=1.0, burst=2, clock=clock)
    await bucket.acquire()
    await bucket.acquire()
    assert bucket.tokens == pytest.approx(0.0)
    clock.advance(10.0)
    assert bucket.tokens == pytest.approx(2.0), "never more than the burst"


async def test_fail_fast_says_when_to_come_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket("tool:search", rate=4.0, clock=clock, wait=False)
    await bucket.acquire()
    with pytest.raises(RateLimitedError) as caught:
        await bucket.acquire()
    assert caught.value.retryable and caught.value.error_class == "rate_limited"
    assert caught.value.retry_after == pytest.approx(0.25)
    assert "tool:search" in caught.value.message
    clock.advance(0.25)
    await bucket.acquire()


async def test_concurrent_waiters_are_spread_out() -> None:
    clock = FakeClock()
    bucket = TokenBucket("t", rate=10.0, burst=1, clock=clock)
    done: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        done.append(clock.monotonic())

    await asyncio.gather(*(one() for _ in range(5)))
    assert len(done) == 5
    gaps = sorted(done)
    assert gaps[-1] - gaps[0] >= 0.4 - 1e-9, "five calls at 10/s take at least 0.4 s"


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (float("inf"), 1)])
def test_bad_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket("t", rate=rate, burst=burst, clock=FakeClock())
