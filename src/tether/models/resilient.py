"""Retries and a circuit breaker around any model, as a model.

``ResilientModel(OpenAIModel("gpt-4.1"))`` answers like the model it wraps, but retries
the failures marked retryable (429, 5xx, timeouts, cut streams) with jittered backoff
that honours ``Retry-After``, within a deadline, and stops calling an endpoint that keeps
failing (its breaker opens; the error is then ``circuit_open`` and nothing is sent).

A 429 slows down every request of the model, not only the one that got it: when the
provider says ``Retry-After: N``, no request of this model starts for the next N seconds
(a rate limit is not an outage, so it never counts against the breaker).

``"openai:..."`` and ``"anthropic:..."`` models from :func:`tether.models.resolve_model`
come wrapped like this.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from tether.clock import Clock, SystemClock
from tether.errors import TetherError
from tether.messages import Message, ModelResponse, ToolDefinition
from tether.models.base import Model, ModelSettings, close_model
from tether.resilience import CircuitBreaker, RetryAttempt, RetryPolicy

__all__ = ["ResilientModel"]


class ResilientModel:
    """A model whose requests are retried and guarded by a circuit breaker.

    Args:
        model: The model to call.
        retry: When to try again. Default :class:`~tether.resilience.RetryPolicy()`: at
            most 5 attempts within 60 s, full jitter from 0.5 s up to 30 s.
        breaker: The endpoint's breaker; share one between models that use the same
            endpoint. Default: a new breaker named after the model, with the defaults of
            :class:`~tether.resilience.CircuitBreaker`.
        clock: Times backoff waits and the breaker. Default: the system clock.
        rng: Random source of the jitter. Default: a new ``random.Random()``.
        on_retry: Called before each wait with a :class:`~tether.resilience.RetryAttempt`.
    """

    def __init__(
        self,
        model: Model,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_retry: Callable[[RetryAttempt], None] | None = None,
    ) -> None:
        self.model = model
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.breaker = breaker or CircuitBreaker(model.name, clock=self.clock)
        self.rng = rng or random.Random()
        self.on_retry = on_retry
        self._resume_at = 0.0
        """Monotonic time before which no request starts (after a 429's Retry-After)."""

    def _throttle(self, error: TetherError) -> None:
        delay = getattr(error, "retry_after", None)
        if error.error_class == "rate_limited" and delay:
            self._resume_at = max(self._resume_at, self.clock.monotonic() + delay)

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.model.name

    async def aclose(self) -> None:
        """Close the wrapped model, if it has anything to close."""
        await close_model(self.model)

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Request a response, retrying retryable failures; see :class:`ResilientModel`.

        Raises:
            ModelError: The last attempt's error (fatal, out of attempts, or the next wait
                would pass the deadline).
            CircuitOpenError: The breaker is open; the model was not called.
        """
        attempts = 0

        async def attempt() -> ModelResponse:
            nonlocal attempts
            attempts += 1
            pause = self._resume_at - self.clock.monotonic()
            if pause > 0:
                await self.clock.sleep(pause)
            try:
                return await self.breaker.call(
                    lambda: self.model.request(messages, tools, settings)
                )
            except TetherError as exc:
                self._throttle(exc)
                raise

        response = await self.retry.call(
            attempt, clock=self.clock, rng=self.rng, on_retry=self.on_retry
        )
        if attempts == response.attempts:
            return response
        return dataclasses.replace(response, attempts=attempts)
