"""The runtime: runs agents against a store, a clock and event subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError
from tether.events import Event
from tether.ids import new_run_id
from tether.run import AgentSpec, Run, RunResult, Subscriber
from tether.store import InMemoryStore, Store

__all__ = ["Tether", "run_blocking"]

_T = TypeVar("_T")
_OutputT = TypeVar("_OutputT")


class Tether:
    """Runs agents and keeps their journals.

    Args:
        store: Where journals go. Default: a new :class:`~tether.store.InMemoryStore`.
        clock: The source of time. Default: :class:`~tether.clock.SystemClock`.
        subscribers: Functions called with every event of every run, in order.
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> None:
        self.store: Store = store if store is not None else InMemoryStore()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.subscribers = tuple(subscribers)

    async def run(
        self,
        agent: AgentSpec[_OutputT],
        task: str,
        *,
        user: str | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[_OutputT]:
        """Run ``agent`` on ``task`` to its end and return the result.

        Never raises for an expected ending (limits, model failure, loops): read
        ``result.status``.

        Args:
            agent: The agent definition.
            task: What the user asks for.
            user: Id of the user the run acts for. Default none.
            subscribers: Extra event subscribers for this run only.
        """
        run = Run(
            agent,
            task,
            run_id=new_run_id(),
            user=user,
            store=self.store,
            clock=self.clock,
            subscribers=(*self.subscribers, *subscribers),
        )
        return await run.execute()

    def run_sync(
        self,
        agent: AgentSpec[_OutputT],
        task: str,
        *,
        user: str | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[_OutputT]:
        """Blocking :meth:`run`, for scripts. Not callable from inside an event loop."""
        return run_blocking(self.run(agent, task, user=user, subscribers=subscribers))

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id``."""
        return await self.store.events(run_id)


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` in a new event loop; refuse clearly inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running: the normal case for a blocking call
    else:
        coroutine.close()
        raise ConfigurationError(
            "run_sync() cannot be called from a running event loop; use `await ....run(...)`"
        )
    return asyncio.run(coroutine)
