"""How long a provider asked us to wait: the ``Retry-After`` header (RFC 9110 §10.2.3).

A server sends either a number of seconds (``Retry-After: 120``) or an HTTP date
(``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``). Some LLM providers also send
``retry-after-ms`` with milliseconds, which is more precise and wins when both are present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after", "retry_after_from_headers"]

# RFC 9110 allows only digits; a sign and a fraction are tolerated because providers send
# them. Exponents, underscores, "inf" and "nan" (all accepted by float()) are refused.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _seconds(text: str) -> float | None:
    """Return ``text`` as a non-negative finite number, or ``None`` if it is not a number."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    if not math.isfinite(value):  # more digits than a float holds
        return None
    return max(value, 0.0)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Parse a ``Retry-After`` header value into seconds to wait.

    Args:
        value: The header value: delay seconds (``"120"``, ``"1.5"``) or an HTTP date
            (``"Wed, 21 Oct 2026 07:28:00 GMT"``). ``None`` when the header is absent.
        now: The current time (timezone-aware), used to turn a date into a delay. Pass
            ``clock.now()``.

    Returns:
        Seconds to wait, at least ``0.0``: a negative number or a date in the past gives
        ``0.0``. ``None`` when ``value`` is ``None``, empty or neither form.

    Raises:
        ValueError: If ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if value is None:
        return None
    text = value.strip()
    seconds = _seconds(text)
    if seconds is not None or not text:
        return seconds
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without saying so; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def retry_after_from_headers(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """Read the delay a response asks for from its headers, in seconds.

    ``retry-after-ms`` (milliseconds) is preferred; when it is absent or not a number,
    ``retry-after`` is parsed with :func:`parse_retry_after`. Header names are matched
    without regard to case.

    Args:
        headers: The response headers (a ``dict`` or any mapping, such as ``httpx.Headers``).
        now: The current time (timezone-aware). Pass ``clock.now()``.

    Returns:
        Seconds to wait (at least ``0.0``), or ``None`` when neither header gives a delay.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        value = _seconds(milliseconds.strip())
        if value is not None:
            return value / 1000
    return parse_retry_after(lowered.get("retry-after"), now=now)
