"""ResilientModel retries what may succeed, fails fast otherwise, and trips its breaker."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from tether.errors import ModelError
from tether.messages import Message, ModelResponse, ToolDefinition
from tether.models import FallbackModel, ModelSettings, ResilientModel
from tether.resilience import BreakerState, CircuitBreaker, CircuitOpenError, RetryPolicy
from tether.testing import FakeClock, FunctionModel

pytestmark = pytest.mark.anyio

SETTINGS = ModelSettings()


def failing(*errors: BaseException, then: str = "ok", name: str = "primary") -> FunctionModel:
    queue = list(errors)

    def answer(messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> object:
        return queue.pop(0) if queue else then

    return FunctionModel(answer, name=name)  # type: ignore[arg-type]


def rate_limited(after: float | None = None) -> ModelError:
    return ModelError("429", error_class="rate_limited", retryable=True, retry_after=after)


def server_error() -> ModelError:
    return ModelError("500", error_class="server_error", retryable=True)


def auth_error() -> ModelError:
    return ModelError("401", error_class="auth_error", retryable=False)


async def ask(model: ResilientModel | FallbackModel) -> ModelResponse:
    return await model.request([], [], SETTINGS)


async def test_retryable_errors_are_retried_and_counted() -> None:
    clock = FakeClock()
    inner = failing(server_error(), rate_limited(after=3.0))
    model = ResilientModel(inner, clock=clock, rng=random.Random(1))
    start = clock.monotonic()
    response = await ask(model)
    assert response.text == "ok" and response.attempts == 3
    assert len(inner.requests) == 3
    assert clock.monotonic() - start >= 3.0, "Retry-After is a floor on the wait"


async def test_fatal_errors_fail_at_once() -> None:
    inner = failing(auth_error())
    model = ResilientModel(inner, clock=FakeClock())
    with pytest.raises(ModelError) as caught:
        await ask(model)
    assert caught.value.error_class == "auth_error" and len(inner.requests) == 1


async def test_attempts_are_bounded() -> None:
    inner = failing(*[server_error() for _ in range(10)])
    model = ResilientModel(
        inner,
        retry=RetryPolicy(max_attempts=5),
        breaker=CircuitBreaker("p", clock=(clock := FakeClock()), consecutive_failures=None),
        clock=clock,
    )
    with pytest.raises(ModelError, match="500"):
        await ask(model)
    assert len(inner.requests) == 5


async def test_a_retry_after_past_the_deadline_fails_fast() -> None:
    clock = FakeClock()
    inner = failing(rate_limited(after=120.0))
    model = ResilientModel(inner, retry=RetryPolicy(deadline=60.0), clock=clock)
    start = clock.monotonic()
    with pytest.raises(ModelError) as caught:
        await ask(model)
    assert caught.value.error_class == "rate_limited"
    assert clock.monotonic() == start, "it did not wait for a retry it could not make"
    assert len(inner.requests) == 1


async def test_an_open_breaker_sends_nothing() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=2, reset_timeout=30.0)
    inner = failing(*[server_error() for _ in range(20)])
    model = ResilientModel(inner, retry=RetryPolicy(max_attempts=5), breaker=breaker, clock=clock)
    with pytest.raises(CircuitOpenError):
        await ask(model)
    assert len(inner.requests) == 2 and breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await ask(model)
    assert len(inner.requests) == 2, "no request reaches an endpoint whose breaker is open"


async def test_rate_limits_do_not_open_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", clock=clock, consecutive_failures=2)
    inner = failing(*[rate_limited(after=0.1) for _ in range(4)])
    model = ResilientModel(inner, breaker=breaker, clock=clock)
    assert (await ask(model)).attempts == 5
    assert breaker.state is BreakerState.CLOSED


async def test_fallback_serves_when_the_primary_fails_for_good() -> None:
    clock = FakeClock()
    primary = failing(auth_error(), name="primary")
    secondary = failing(name="secondary")
    model = FallbackModel(
        [ResilientModel(primary, clock=clock), ResilientModel(secondary, clock=clock)]
    )
    response = await ask(model)
    assert response.degraded and response.model_name == "secondary"
    assert model.name == "fallback(primary, secondary)"


async def test_fallback_is_not_degraded_when_the_primary_answers() -> None:
    model = FallbackModel([failing(name="a"), failing(name="b")])
    response = await ask(model)
    assert not response.degraded and response.model_name == "a"


async def test_fallback_reports_every_failure() -> None:
    model = FallbackModel([failing(auth_error(), name="a"), failing(server_error(), name="b")])
    with pytest.raises(ModelError) as caught:
        await ask(model)
    error = caught.value
    assert error.error_class == "server_error" and error.retryable
    assert "a: auth_error" in error.message and "b: server_error" in error.message


def test_fallback_needs_two_models() -> None:
    from tether.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        FallbackModel([failing()])


async def test_a_run_served_by_a_fallback_ends_degraded() -> None:
    from tether import Agent, ModelResponded, Tether
    from tether.store import InMemoryStore

    store = InMemoryStore()
    model = FallbackModel([failing(auth_error(), name="a"), failing(name="b")])
    result = await Tether(store=store).run(Agent(name="x", model=model), "go")
    assert result.status.value == "completed" and result.degraded
    served = [e for e in await store.events(result.run_id) if isinstance(e, ModelResponded)]
    assert [e.response.model_name for e in served] == ["b"]
    assert served[0].response.degraded
    again = await Tether(store=store).resume(result.run_id, agent=Agent(name="x", model=model))
    assert again.degraded, "degraded is rebuilt from the journal"


async def test_a_429_holds_back_every_request_of_the_model() -> None:
    import asyncio

    clock = FakeClock()
    started: list[float] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> object:
        started.append(clock.monotonic())
        return rate_limited(after=5.0) if len(started) == 1 else "ok"

    model = ResilientModel(FunctionModel(answer), clock=clock)  # type: ignore[arg-type]
    first = asyncio.create_task(ask(model))
    await asyncio.sleep(0)  # the first request got its 429
    clock.advance(2.0)
    second = await ask(model)
    assert second.text == "ok" and (await first).text == "ok"
    assert started[0] == 0.0 and min(started[1:]) >= 5.0, "no request before Retry-After"
