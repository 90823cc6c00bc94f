"""The worker: executes pending runs and recovers runs whose owner died.

A worker claims runs from the store (oldest created first, among ``pending`` runs and
``running`` runs whose lease lapsed), loads each agent from the run's ``agent_ref`` and
drives it with :meth:`Tether.drive <tether.runtime.Tether.drive>`, up to ``concurrency``
at a time.
:meth:`Worker.stop` (``SIGTERM`` in ``tether worker``) stops claiming; each active run
stops at its next step boundary and releases its lease, losing nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from tether.errors import AgentLoadError, LeaseLostError
from tether.loading import load_agent
from tether.memory import Memory
from tether.run import AgentSpec
from tether.runtime import Tether
from tether.store import Lease

__all__ = ["Worker", "WorkerStats"]

logger = logging.getLogger("tether.worker")


@dataclass(slots=True, kw_only=True)
class WorkerStats:
    """What a worker did since it started."""

    claimed: int = 0
    """Runs claimed (new and recovered)."""
    finished: int = 0
    """Runs driven to a terminal status or a pause (``needs_review``)."""
    released: int = 0
    """Runs handed back unfinished on stop."""
    lost: int = 0
    """Runs taken over by another owner while this worker held them."""


class Worker:
    """Claims and drives runs until stopped (or, with ``until_idle``, until none is left).

    Args:
        tether: The runtime (its store, clock, owner name and lease length).
        concurrency: Runs driven at the same time. Default 4.
        poll_interval: Seconds between claim attempts when nothing is claimable.
            Default 0.5.
        load: How to turn an ``agent_ref`` into an agent. Default:
            :func:`~tether.loading.load_agent`, cached per reference.
        memory: A memory directory to consolidate once a day (the logs before today
            into ``MEMORY.md``; see :mod:`tether.memory.consolidate`). Default none.
    """

    def __init__(
        self,
        tether: Tether,
        *,
        concurrency: int = 4,
        poll_interval: float = 0.5,
        load: Callable[[str], AgentSpec[Any]] = load_agent,
        memory: Memory | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.tether = tether
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.stats = WorkerStats()
        self._load = load
        self._agents: dict[str, AgentSpec[Any]] = {}
        self._stopping = asyncio.Event()
        self._swept = float("-inf")
        self.memory = memory
        self._consolidated: date | None = None

    def stop(self) -> None:
        """Stop claiming; active runs stop at their next step and release their lease."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping.is_set()

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Claim and drive runs until :meth:`stop` (or until idle); return the stats."""
        active: set[asyncio.Task[None]] = set()
        while not self.stopping:
            leases = await self._claim(self.concurrency - len(active))
            for lease in leases:
                self.stats.claimed += 1
                task = asyncio.create_task(self._drive(lease))
                active.add(task)
                task.add_done_callback(active.discard)
            if leases:
                continue
            await self._sweep()
            if until_idle and not active:
                break
            await self._wait(active)
        if active:
            await asyncio.gather(*active, return_exceptions=True)
        return self.stats

    async def _sweep(self) -> None:
        """Housekeeping of dead workers, lapsed approvals and memory, at most once per lease length.

        Releases the budget reservations of runs whose worker died (a reservation is held
        for one model call; see :mod:`tether.governance.budgets`), and wakes runs whose
        approval requests expired unanswered, so they continue with the call denied.
        Consolidates the memory directory, if any, once a day.
        """
        now = self.tether.clock.monotonic()
        if now - self._swept < self.tether.lease_for.total_seconds():
            return
        self._swept = now
        budgets = self.tether.budgets
        if budgets is not None:
            released = await budgets.book.release_lapsed()
            if released:
                logger.info(
                    "released %d budget reservations of runs that lost their lease", released
                )
        woken = await self.tether.wake_expired()
        if woken:
            logger.info("%d runs continue after their approval requests expired", woken)
        await self._consolidate_memory()

    async def _consolidate_memory(self) -> None:
        """Consolidate the memory directory, once per (UTC) day."""
        memory = self.memory
        if memory is None or self._consolidated == memory.today():
            return
        self._consolidated = memory.today()
        try:
            report = await asyncio.to_thread(memory.consolidate)
        except Exception:  # housekeeping must not stop the worker; retried tomorrow
            logger.exception("consolidating memory in %s failed", memory.home)
            return
        if report.logs:
            logger.info(
                "consolidated %d memory logs: %d new facts, %d merged",
                len(report.logs),
                report.added,
                report.merged,
            )

    async def _claim(self, free: int) -> list[Lease]:
        """Claim up to ``free`` runs at once (one store transaction where it groups them)."""
        if free <= 0:
            return []
        store, owner, lease_for = self.tether.store, self.tether.owner, self.tether.lease_for
        claimed = await asyncio.gather(
            *(store.claim(owner, lease_for=lease_for) for _ in range(free))
        )
        return [lease for lease in claimed if lease is not None]

    async def _wait(self, active: set[asyncio.Task[None]]) -> None:
        """Sleep until a run finishes, the poll interval passes, or stop is asked."""
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._stopping.wait())}
        waiters.update(active)
        done, pending = await asyncio.wait(
            waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for future in pending:
            if future not in active:
                future.cancel()
        del done

    async def _drive(self, lease: Lease) -> None:
        try:
            agent = await self._agent_for(lease)
            if agent is None:
                self.stats.finished += 1
                return
            result = await self.tether.drive(lease, agent, should_stop=lambda: self.stopping)
        except LeaseLostError:
            self.stats.lost += 1
            logger.warning("lost the lease of run %s to another owner", lease.run_id)
            return
        except Exception:
            # Counted as a crash: the lease lapses and the run is retried until
            # max_crashes, then ends crash_loop; never retried in a tight loop.
            logger.exception("run %s failed inside the worker", lease.run_id)
            return
        if result.status.is_terminal:
            self.stats.finished += 1
        else:
            self.stats.released += 1

    async def _agent_for(self, lease: Lease) -> AgentSpec[Any] | None:
        """Load the run's agent; a run that cannot be loaded ends ``failed``."""
        record = await self.tether.store.get_run(lease.run_id)
        reference = None if record is None else record.agent_ref
        try:
            if reference is None:
                raise AgentLoadError(
                    f"run {lease.run_id} has no agent reference; only a process that has "
                    "the agent can resume it (Tether.resume(run_id, agent=...))"
                )
            agent = self._agents.get(reference)
            if agent is None:
                agent = self._agents[reference] = self._load(reference)
        except AgentLoadError as exc:
            await self.tether.fail(lease, exc.error_class, exc.message)
            return None
        return agent
