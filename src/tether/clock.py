"""The only door to time.

Every part of tether that reads the time or waits goes through a :class:`Clock`, so tests
can use :class:`~tether.testing.FakeClock` and never sleep.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time, monotonic time and sleeping."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds, for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` seconds."""
        ...


class SystemClock:
    """The real clock: :func:`datetime.now`, :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return :func:`time.monotonic` in seconds."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` seconds with :func:`asyncio.sleep`."""
        await asyncio.sleep(seconds)
