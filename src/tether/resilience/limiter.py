"""A token bucket: at most ``rate`` calls per second on average, bursts of ``burst``.

The bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second on an
injected clock. A call takes one token. When none is left, :meth:`TokenBucket.acquire`
either waits for the next token (``wait=True``, the default) or fails fast with
:class:`RateLimitedError` (retryable, with ``retry_after`` set), per policy.
"""

from __future__ import annotations

from tether.clock import Clock
from tether.errors import TetherError
from tether.resilience._checks import require_count, require_number

__all__ = ["RateLimitedError", "TokenBucket"]


class RateLimitedError(TetherError):
    """A call was refused because its rate limit has no token left.

    Attributes:
        retry_after: Seconds until the next token.
    """

    error_class = "rate_limited"
    retryable = True

    def __init__(self, name: str, *, retry_after: float) -> None:
        super().__init__(
            f"{name}: rate limit reached; the next call is possible in {retry_after:.3g} s"
        )
        self.retry_after = retry_after


class TokenBucket:
    """A rate limit for one tool or endpoint (not thread-safe: one event loop).

    Args:
        name: What is limited, for messages, such as ``"tool:search"``.
        rate: Tokens added per second. Positive.
        burst: Tokens the bucket holds (calls allowed at once after a pause). At least 1.
            Default 1.
        clock: Measures the refill (``monotonic``) and waits (``sleep``).
        wait: ``True`` (default): :meth:`acquire` waits for a token. ``False``: it raises
            :class:`RateLimitedError` at once.

    Raises:
        ValueError: If a number is out of range.
    """

    def __init__(
        self, name: str, *, rate: float, burst: int = 1, clock: Clock, wait: bool = True
    ) -> None:
        require_number("rate", rate, minimum=0.0, exclusive=True)
        require_count("burst", burst, minimum=1)
        self.name = name
        self.rate = rate
        self.burst = burst
        self.wait = wait
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.monotonic()

    def __repr__(self) -> str:
        return f"TokenBucket({self.name!r}, rate={self.rate}, burst={self.burst})"

    @property
    def tokens(self) -> float:
        """Tokens available now (may be fractional)."""
        self._refill()
        return self._tokens

    async def acquire(self) -> None:
        """Take one token, waiting for it or failing fast per ``wait``.

        Waiting callers are served in the order they arrived: each reserves the next
        token before it sleeps.

        Raises:
            RateLimitedError: No token is left and ``wait`` is false.
        """
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return
        needed = (1 - self._tokens) / self.rate
        if not self.wait:
            raise RateLimitedError(self.name, retry_after=needed)
        self._tokens -= 1  # reserve the next token; the refill pays the debt back
        await self._clock.sleep(needed)

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._updated
        self._updated = now
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
