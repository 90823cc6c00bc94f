"""An in-memory :class:`~tether.store.Store` for tests, notebooks and benchmarks.

Nothing survives the process. Use a durable store for anything that must.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether.events import Event

__all__ = ["InMemoryStore"]


class InMemoryStore:
    """Journals kept in a dict of lists. Not shared between processes."""

    def __init__(self) -> None:
        self._journals: dict[str, list[Event]] = {}

    async def append(self, event: Event) -> None:
        """Append ``event`` to the journal of ``event.run_id``."""
        journal = self._journals.get(event.run_id)
        if journal is None:
            journal = self._journals[event.run_id] = []
        journal.append(event)

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return a copy of the journal of ``run_id`` (empty if unknown)."""
        return list(self._journals.get(run_id, ()))

    async def run_ids(self) -> Sequence[str]:
        """Return the ids of all runs, oldest first."""
        return list(self._journals)
