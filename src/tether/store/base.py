"""The store seam: where run journals live.

A run's truth is its journal, the ordered list of its events. This protocol grows with
durability (leases, effects, approvals, budgets); implementations are in-memory (here),
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tether.events import Event

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Append-only storage of run journals."""

    async def append(self, event: Event) -> None:
        """Append ``event`` to the journal of ``event.run_id``."""
        ...

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id`` in order (empty if the run is unknown)."""
        ...

    async def run_ids(self) -> Sequence[str]:
        """Return the ids of all runs, oldest first."""
        ...
