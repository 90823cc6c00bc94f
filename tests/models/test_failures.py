"""HTTP failures map to one error class each, with retryability and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tether.models.failures import status_error

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "code", "message", "error_class", "retryable"),
    [
        (429, "rate_limit_exceeded", "Rate limit reached", "rate_limited", True),
        (429, "insufficient_quota", "You exceeded your current quota", "quota_exhausted", False),
        (429, None, "Your credit balance is too low", "quota_exhausted", False),
        (400, "invalid_request_error", "Your credit balance is too low", "quota_exhausted", False),
        (402, None, "billing hard limit reached", "quota_exhausted", False),
        (401, "invalid_api_key", "Incorrect API key", "auth_error", False),
        (403, "permission_error", "not allowed", "auth_error", False),
        (
            400,
            "context_length_exceeded",
            "maximum context length is 8192",
            "context_too_long",
            False,
        ),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 300000 tokens",
            "context_too_long",
            False,
        ),
        (400, "invalid_request_error", "messages: field required", "bad_request", False),
        (404, None, "model not found", "bad_request", False),
        (422, None, "unprocessable", "bad_request", False),
        (500, None, "internal", "server_error", True),
        (502, None, "bad gateway", "server_error", True),
        (503, None, "unavailable", "overloaded", True),
        (529, "overloaded_error", "Overloaded", "overloaded", True),
        (408, None, "request timeout", "timeout", True),
        (409, None, "conflict", "server_error", True),
    ],
)
def test_each_status_has_one_class(
    status: int, code: str | None, message: str, error_class: str, retryable: bool
) -> None:
    error = status_error(status, provider="p", message=message, code=code, now=NOW)
    assert (error.error_class, error.retryable, error.status_code) == (
        error_class,
        retryable,
        status,
    )
    assert f"HTTP {status}" in error.message and message in error.message


def test_retry_after_in_seconds_and_as_a_date() -> None:
    seconds = status_error(
        429, provider="p", message="slow down", headers={"Retry-After": "7"}, now=NOW
    )
    assert seconds.retry_after == 7.0
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    dated = status_error(503, provider="p", message="busy", headers={"retry-after": when}, now=NOW)
    assert dated.retry_after == pytest.approx(30.0)
    millis = status_error(
        429, provider="p", message="x", headers={"retry-after-ms": "1500"}, now=NOW
    )
    assert millis.retry_after == pytest.approx(1.5)


def test_fatal_errors_carry_no_retry_after() -> None:
    error = status_error(
        429, provider="p", message="quota", code="insufficient_quota",
        headers={"Retry-After": "5"}, now=NOW,
    )  # fmt: skip
    assert error.retry_after is None and not error.retryable


def test_garbage_retry_after_is_ignored() -> None:
    error = status_error(429, provider="p", message="x", headers={"Retry-After": "soon"}, now=NOW)
    assert error.retry_after is None and error.retryable
