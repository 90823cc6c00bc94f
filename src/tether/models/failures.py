"""Provider failures mapped to :class:`~tether.errors.ModelError` classes, at the edge.

Both official SDKs raise an error carrying the HTTP status, the headers and the decoded
error body; :func:`status_error` turns those into one ``error_class`` with ``retryable``
and ``retry_after`` set, so retries, breakers and fallbacks never look at a provider's
own exception types. See :class:`~tether.errors.ModelError` for the classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from tether.errors import ModelError
from tether.resilience import retry_after_from_headers

__all__ = ["invalid_response", "status_error", "stream_truncated", "timed_out", "unreachable"]

_QUOTA = re.compile(r"insufficient_quota|quota|credit balance|billing", re.IGNORECASE)
_CONTEXT = re.compile(
    r"context_length_exceeded|context length|context window|maximum context|"
    r"prompt is too long|too many tokens|exceeds the context",
    re.IGNORECASE,
)
_RETRYABLE_CLIENT = {408: "timeout", 409: "server_error"}


def status_error(
    status: int,
    *,
    provider: str,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    now: datetime,
) -> ModelError:
    """Return the :class:`ModelError` for an HTTP error response.

    Args:
        status: The HTTP status code.
        provider: Who answered, for the message (``openai``, ``anthropic``, a base URL).
        message: The provider's error message.
        code: The provider's error code or type (``insufficient_quota``,
            ``context_length_exceeded``, ``overloaded_error``), if any.
        headers: Response headers (``Retry-After``, ``retry-after-ms``).
        now: The current time, to read a ``Retry-After`` given as an HTTP date.
    """
    detail = f"{provider} answered HTTP {status}: {message}"
    text = f"{code or ''} {message}"
    retry_after = retry_after_from_headers(headers or {}, now=now)

    def fail(error_class: str, retryable: bool) -> ModelError:
        return ModelError(
            detail,
            error_class=error_class,
            retryable=retryable,
            retry_after=retry_after if retryable else None,
            status_code=status,
        )

    if status in (400, 402, 429) and _QUOTA.search(text):
        # OpenAI: 429 insufficient_quota; Anthropic: 400 "credit balance is too low".
        return fail("quota_exhausted", retryable=False)
    if status == 429:
        return fail("rate_limited", retryable=True)
    if status in (401, 403):
        return fail("auth_error", retryable=False)
    if status in (503, 529) or "overloaded" in text.lower():
        return fail("overloaded", retryable=True)
    if status >= 500:
        return fail("server_error", retryable=True)
    if status in _RETRYABLE_CLIENT:
        return fail(_RETRYABLE_CLIENT[status], retryable=True)
    if _CONTEXT.search(text):
        return fail("context_too_long", retryable=False)
    if 400 <= status < 500:
        return fail("bad_request", retryable=False)
    return fail("model_error", retryable=False)


def stream_truncated(provider: str, why: str) -> ModelError:
    """The error for a stream that ended before its response was complete (retryable)."""
    return ModelError(
        f"{provider}: the response stream was cut short ({why}); its tool calls were not executed",
        error_class="stream_truncated",
        retryable=True,
    )


def invalid_response(provider: str, why: str) -> ModelError:
    """The error for a 200 answer that is not a usable response (retryable)."""
    return ModelError(
        f"{provider}: the answer is not a valid response ({why})",
        error_class="invalid_response",
        retryable=True,
    )


def timed_out(provider: str) -> ModelError:
    """The error for a request that got no complete answer in time (retryable)."""
    return ModelError(f"{provider} did not answer in time", error_class="timeout", retryable=True)


def unreachable(provider: str, cause: BaseException) -> ModelError:
    """The error for an endpoint that could not be reached or dropped us (retryable)."""
    return ModelError(
        f"{provider} could not be reached: {cause}",
        error_class="connection_error",
        retryable=True,
    )
