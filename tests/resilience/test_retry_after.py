"""Retry-After: delay seconds, HTTP dates, retry-after-ms, and garbage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.resilience import parse_retry_after, retry_after_from_headers

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        (".25", 0.25),
        ("-3", 0.0),
        ("-0.5", 0.0),
    ],
)
def test_delay_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 21 Oct 2026 07:30:00 GMT", 120.0),  # IMF-fixdate
        ("Wed, 21 Oct 2026 07:28:00 GMT", 0.0),
        ("Wednesday, 21-Oct-26 07:28:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:29:00 2026", 60.0),  # asctime, no zone: GMT
        ("Wed, 21 Oct 2026 07:29:00 -0000", 60.0),
        ("Wed, 21 Oct 2026 09:29:00 +0200", 60.0),
    ],
)
def test_http_dates(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value", ["Tue, 20 Oct 2026 07:28:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
def test_past_dates_mean_now(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "1e3",
        "inf",
        "nan",
        "1_000",
        "12 seconds",
        "0x10",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Wed, 21 Oct 2026 25:00:00 GMT",
        "9" * 400,
    ],
)
def test_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_to_none_or_a_non_negative_delay(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0.0


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_retry_after("1", now=datetime(2026, 1, 1))


def test_headers_prefer_milliseconds_and_ignore_case() -> None:
    headers = {"Retry-After": "2", "Retry-After-Ms": "1500"}
    assert retry_after_from_headers(headers, now=NOW) == 1.5
    assert retry_after_from_headers({"RETRY-AFTER-MS": "250"}, now=NOW) == 0.25
    assert retry_after_from_headers({"retry-after-ms": "-5"}, now=NOW) == 0.0


def test_headers_fall_back_to_retry_after() -> None:
    assert retry_after_from_headers({"retry-after": "3"}, now=NOW) == 3.0
    assert retry_after_from_headers({"Retry-After-Ms": "later", "Retry-After": "3"}, now=NOW) == 3.0
    date = {"Retry-After": "Wed, 21 Oct 2026 07:29:00 GMT"}
    assert retry_after_from_headers(date, now=NOW) == 60.0


def test_headers_without_a_delay() -> None:
    assert retry_after_from_headers({}, now=NOW) is None
    assert retry_after_from_headers({"content-type": "application/json"}, now=NOW) is None
    assert retry_after_from_headers({"retry-after": "whenever"}, now=NOW) is None
