"""A clock that only moves when told to (or when something sleeps on it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~tether.clock.Clock` for tests: ``sleep`` advances time instantly.

    Args:
        start: Initial wall-clock time (timezone-aware). Default 2026-01-01T00:00:00Z.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start
        self._monotonic = 0.0
        self.sleeps: list[float] = []
        """Every ``sleep`` duration requested, in seconds."""

    def now(self) -> datetime:
        """Return the current fake time."""
        return self._now

    def monotonic(self) -> float:
        """Return fake seconds elapsed since creation."""
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` at once (and yield to the event loop)."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (a ``timedelta`` or seconds)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._monotonic += seconds
        self._now += timedelta(seconds=seconds)
