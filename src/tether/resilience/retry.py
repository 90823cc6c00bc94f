"""Retrying a failed call: capped exponential backoff with full jitter, within a deadline.

:class:`RetryPolicy` is a frozen value. :meth:`RetryPolicy.delay` is a pure function of
the attempt, the error and a random generator; :meth:`RetryPolicy.call` is the engine that
calls, decides and sleeps through an injected :class:`~tether.clock.Clock`.

Only a :class:`~tether.errors.TetherError` with ``retryable=True`` is retried. Every other
exception, a non-retryable ``TetherError`` or anything that is not a ``TetherError`` at all,
propagates unchanged from the attempt that raised it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from tether.clock import Clock
from tether.errors import TetherError
from tether.resilience._checks import require_count, require_number

__all__ = ["Jitter", "RetryAttempt", "RetryPolicy"]

T = TypeVar("T")

Jitter = Literal["full", "none"]
"""How a backoff delay is randomised: ``"full"`` draws uniformly from ``[0, cap]``;
``"none"`` waits exactly ``cap`` (deterministic, for tests and examples)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryAttempt:
    """One retry about to happen, as reported to ``on_retry``.

    Attributes:
        attempt: The number of the attempt that failed (1 for the first call).
        error_class: The ``error_class`` of its error, such as ``"rate_limited"``.
        delay: Seconds the policy waits before attempt ``attempt + 1``.
    """

    attempt: int
    error_class: str
    delay: float


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """When and how long to wait before calling again.

    The backoff cap of retry ``n`` (after the ``n``-th failed attempt) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``; with full jitter the delay is
    drawn uniformly from ``[0, cap]``, so many clients that failed together do not retry
    together. An error's ``retry_after`` (seconds, as on
    :class:`~tether.errors.ModelError`) is a floor: the delay is never shorter.

    Attributes:
        max_attempts: Attempts in total, the first call included. At least 1 (1 disables
            retrying). Default 5.
        initial_delay: Backoff cap of the first retry, in seconds. At least 0. Default 0.5.
        max_delay: Largest backoff cap, in seconds; at least ``initial_delay``. Default
            30.0. A ``retry_after`` may ask for longer; the deadline still applies.
        multiplier: Growth of the cap per retry. At least 1. Default 2.0.
        deadline: Seconds from the start of the first attempt within which every wait must
            end; a wait that would end at or after it is not started and the last error is
            raised at once. ``None`` for no deadline. Default 60.0. The deadline does not
            cancel an attempt in flight: give the call its own timeout.
        jitter: ``"full"`` (default) or ``"none"``; see :data:`Jitter`.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    deadline: float | None = 60.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        require_count("max_attempts", self.max_attempts, minimum=1)
        require_number("initial_delay", self.initial_delay, minimum=0.0)
        require_number("max_delay", self.max_delay, minimum=self.initial_delay)
        require_number("multiplier", self.multiplier, minimum=1.0)
        if self.deadline is not None:
            require_number("deadline", self.deadline, minimum=0.0, exclusive=True)
        if self.jitter not in ("full", "none"):
            raise ValueError(f"jitter must be 'full' or 'none', got {self.jitter!r}")

    def backoff_cap(self, attempt: int) -> float:
        """Return the backoff cap after failed attempt ``attempt`` (1-based), in seconds."""
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        try:
            cap = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            return self.max_delay
        return min(cap, self.max_delay)

    def delay(self, attempt: int, error: TetherError, rng: random.Random) -> float:
        """Return the seconds to wait after failed attempt ``attempt`` (1-based).

        Args:
            attempt: The number of the attempt that failed; 1 for the first call.
            error: Its error. A ``retry_after`` attribute (seconds) is the least delay.
            rng: The random generator for jitter; seed it for reproducible delays.

        Returns:
            ``uniform(0, cap)`` with full jitter or ``cap`` without, raised to the error's
            ``retry_after`` if that is longer.
        """
        cap = self.backoff_cap(attempt)
        wait = rng.uniform(0.0, cap) if self.jitter == "full" else cap
        floor = _retry_after(error)
        return wait if floor is None else max(wait, floor)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        clock: Clock,
        rng: random.Random | None = None,
        on_retry: Callable[[RetryAttempt], None] | None = None,
    ) -> T:
        """Await ``fn()`` until it succeeds, retrying retryable errors within the policy.

        Args:
            fn: Makes one attempt; called anew for every attempt, so it must start a fresh
                request each time (``lambda: model.request(...)``).
            clock: Where the deadline is measured (``monotonic``) and waits happen
                (``sleep``).
            rng: The random generator for jitter. Default: a new unseeded
                ``random.Random``.
            on_retry: Called before each wait with a :class:`RetryAttempt`.

        Returns:
            What the first successful attempt returned.

        Raises:
            TetherError: The last attempt's error, unchanged, when it is not retryable,
                when ``max_attempts`` attempts have failed, or when waiting would reach the
                deadline (fail fast: the error is raised without waiting).
            Exception: Anything that is not a ``TetherError`` propagates at once.
        """
        start = clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn()
            except TetherError as error:
                if not error.retryable or attempt >= self.max_attempts:
                    raise
                if rng is None:
                    rng = random.Random()
                wait = self.delay(attempt, error, rng)
                if self._past_deadline(clock.monotonic() - start + wait):
                    raise
                if on_retry is not None:
                    on_retry(
                        RetryAttempt(attempt=attempt, error_class=error.error_class, delay=wait)
                    )
            # Sleep outside the handler so the next attempt's error does not chain this one.
            await clock.sleep(wait)

    def _past_deadline(self, elapsed_after_wait: float) -> bool:
        return self.deadline is not None and elapsed_after_wait >= self.deadline


def _retry_after(error: TetherError) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(float(value), 0.0)
