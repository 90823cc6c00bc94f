"""The run's journal writer: replay-aware, batched, fenced.

``emit`` skips events the journal already holds (see :class:`~tether.run.replay.Replay`)
and queues the rest; ``flush`` commits the queue in one store transaction under the run's
lease and then hands the events to subscribers. The loop flushes before every side effect
(a model call, a tool call) and at the end, so everything that happened before an effect
is durable before the effect starts, at one commit per effect rather than per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from tether.events import Event
from tether.run.replay import Replay
from tether.store import Lease, Store

__all__ = ["Journal", "Subscriber"]

logger = logging.getLogger("tether")

Subscriber = Callable[[Event], None]
"""A function called with every event of a run, in order, once it is durable.

A process that takes a run over (``Tether.resume``, a worker) first passes it the run's
``RunStarted`` again, so it learns the run's agent and user."""


class Journal:
    """Writes one run's events to its store."""

    def __init__(
        self, *, store: Store, lease: Lease, replay: Replay, subscribers: Sequence[Subscriber]
    ) -> None:
        self.store = store
        self.lease = lease
        self.replay = replay
        self.subscribers = tuple(subscribers)
        self._outbox: list[Event] = []
        self.released = False
        """Whether the final flush released the lease."""

    def emit(self, event: Event) -> None:
        """Queue ``event`` unless the journal already holds it."""
        if not self.replay.recorded(event):
            self._outbox.append(event)

    async def flush(self, *, release: bool = False) -> None:
        """Commit queued events in one transaction, then notify subscribers.

        With ``release``, the lease is released in the same transaction (the run is over
        or paused); :attr:`released` is then true.

        Raises:
            LeaseLostError: Another owner holds the run; nothing was written.
        """
        if not self._outbox:
            if release:
                await self.store.release(self.lease)
                self.released = True
            return
        events, self._outbox = self._outbox, []
        await self.store.append(events, self.lease, release=release)
        self.released = release
        for event in events:
            for subscriber in self.subscribers:
                try:
                    subscriber(event)
                except Exception:
                    logger.exception("event subscriber %r failed on %s", subscriber, event.kind)
