"""Retry policies and circuit breakers for calls that can fail: models and tools.

Each is a value that wraps a call with the same signature, ``async () -> T``::

    policy = RetryPolicy()
    breaker = CircuitBreaker("openai:gpt-4o", clock=clock)
    response = await policy.call(lambda: breaker.call(lambda: model.request(...)), clock=clock)

Retryability is data on the error (``TetherError.retryable``, ``ModelError.retry_after``);
:func:`retry_after_from_headers` turns a provider's ``Retry-After`` headers into seconds.
"""

from tether.resilience.breaker import (
    FAILURE_CLASSES,
    BreakerSnapshot,
    BreakerState,
    BreakerStateChanged,
    CircuitBreaker,
    CircuitOpenError,
    counts_as_failure,
)
from tether.resilience.limiter import RateLimitedError, TokenBucket
from tether.resilience.retry import Jitter, RetryAttempt, RetryPolicy
from tether.resilience.retry_after import parse_retry_after, retry_after_from_headers

__all__ = [
    "FAILURE_CLASSES",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStateChanged",
    "CircuitBreaker",
    "CircuitOpenError",
    "Jitter",
    "RateLimitedError",
    "RetryAttempt",
    "RetryPolicy",
    "TokenBucket",
    "counts_as_failure",
    "parse_retry_after",
    "retry_after_from_headers",
]
