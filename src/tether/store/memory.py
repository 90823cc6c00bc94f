"""An in-memory :class:`~tether.store.Store` for tests, notebooks and benchmarks.

Nothing survives the process. It implements the whole protocol, leases and fencing
included, on an injected clock, so it is the reference the durable stores are tested
against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tether.clock import Clock, SystemClock
from tether.errors import LeaseLostError, RunNotFoundError, RunStateError
from tether.events import Event, RunFinished, RunStarted, status_after
from tether.status import RunStatus
from tether.store.base import CLAIMABLE_BY_ID, Lease, Remembered, RunRecord

__all__ = ["InMemoryStore"]


@dataclass(slots=True)
class _Run:
    """A run's row, mutable (the store owns it); :attr:`record` is its frozen view."""

    started: RunStarted
    created_at: datetime
    updated_at: datetime
    status: RunStatus = RunStatus.PENDING
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    epoch: int = 0
    journal: list[Event] = field(default_factory=list[Event])

    @property
    def record(self) -> RunRecord:
        started = self.started
        return RunRecord(
            run_id=started.run_id,
            agent=started.agent,
            agent_ref=started.agent_ref,
            user=started.user,
            task=started.task,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            attempts=self.attempts,
            lease_owner=self.lease_owner,
            lease_expires_at=self.lease_expires_at,
            finished_at=self.finished_at,
            events=len(self.journal),
        )


class InMemoryStore:
    """Runs and journals in dicts. Not shared between processes.

    Args:
        clock: The store's clock, used for leases. Default: the system clock.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._runs: dict[str, _Run] = {}
        self._remembered: dict[tuple[str, str], Remembered] = {}

    async def create_run(
        self,
        started: RunStarted,
        *,
        owner: str | None = None,
        lease_for: timedelta | None = None,
    ) -> Lease | None:
        """Accept a run: its row and its first event, claimed if ``owner`` is given."""
        if started.run_id in self._runs:
            raise RunStateError(f"run {started.run_id} already exists")
        now = self._clock.now()
        self._runs[started.run_id] = _Run(started, now, now, journal=[started])
        if owner is None:
            return None
        return await self.claim(owner, lease_for=lease_for or timedelta(0), run_id=started.run_id)

    async def claim(
        self, owner: str, *, lease_for: timedelta, run_id: str | None = None, force: bool = False
    ) -> Lease | None:
        """Claim a run; see :meth:`Store.claim`."""
        now = self._clock.now()
        if run_id is None:
            candidates = [r for r in self._runs.values() if _claimable_next(r, now)]
            if not candidates:
                return None
            run = min(candidates, key=lambda r: r.created_at)
        else:
            found = self._runs.get(run_id)
            if found is None:
                raise RunNotFoundError(f"no run {run_id}")
            if found.finished_at is not None:
                return None
            if not force and not _claimable_by_id(found, now):
                return None
            run = found
        run.epoch += 1
        if run.status is RunStatus.PENDING:
            run.status = RunStatus.RUNNING
        run.attempts += 1
        run.lease_owner = owner
        run.lease_expires_at = now + lease_for
        run.updated_at = now
        return Lease(
            run_id=run.started.run_id,
            owner=owner,
            epoch=run.epoch,
            attempts=run.attempts,
            expires_at=run.lease_expires_at,
        )

    async def renew(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """Extend a lease; see :meth:`Store.renew`."""
        run = self._fenced(lease)
        run.lease_expires_at = self._clock.now() + lease_for
        return dataclasses.replace(lease, expires_at=run.lease_expires_at)

    async def release(self, lease: Lease) -> None:
        """Give a run up cleanly; see :meth:`Store.release`."""
        run = self._runs.get(lease.run_id)
        if run is None or run.epoch != lease.epoch or run.lease_owner is None:
            return
        if run.status is RunStatus.RUNNING:
            run.status = RunStatus.PENDING
        run.attempts = 0
        run.lease_owner = None
        run.lease_expires_at = None
        run.updated_at = self._clock.now()

    async def append(self, events: Sequence[Event], lease: Lease, *, release: bool = False) -> None:
        """Append ``events`` if the lease is current; see :meth:`Store.append`."""
        run = self._fenced(lease)
        if any(e.run_id != lease.run_id for e in events):
            raise ValueError("every event must belong to the lease's run")
        now = self._clock.now()
        for event in events:
            status = status_after(event)
            if status is not None:
                run.status = status
            if isinstance(event, RunFinished):
                run.finished_at = now
        run.journal.extend(events)
        run.updated_at = now
        if release:
            await self.release(lease)

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return a copy of the journal of ``run_id`` (empty if unknown)."""
        run = self._runs.get(run_id)
        return [] if run is None else list(run.journal)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the row of ``run_id``, or ``None``."""
        run = self._runs.get(run_id)
        return None if run is None else run.record

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int | None = None,
    ) -> Sequence[RunRecord]:
        """Return runs, newest first, optionally filtered."""
        records = [
            r.record
            for r in reversed(self._runs.values())
            if (status is None or r.status is status)
            and (agent is None or r.started.agent == agent)
        ]
        return records if limit is None else records[: max(limit, 0)]

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete runs finished before ``finished_before``."""
        doomed = [
            run_id
            for run_id, run in self._runs.items()
            if run.finished_at is not None and run.finished_at < finished_before
        ]
        for run_id in doomed:
            del self._runs[run_id]
        now = self._clock.now()
        for slot, kept in list(self._remembered.items()):
            if kept.expires_at <= now:
                del self._remembered[slot]
        return len(doomed)

    async def remember(
        self, namespace: str, key: str, value: str, *, ttl: timedelta, source: str | None = None
    ) -> None:
        """Keep ``value`` for ``ttl``; see :meth:`Store.remember`."""
        expires = self._clock.now() + ttl
        self._remembered[namespace, key] = Remembered(
            value=value, source=source, expires_at=expires
        )

    async def recall(self, namespace: str, key: str) -> Remembered | None:
        """Return the live value under ``(namespace, key)``; see :meth:`Store.recall`."""
        kept = self._remembered.get((namespace, key))
        if kept is None or kept.expires_at <= self._clock.now():
            return None
        return kept

    async def close(self) -> None:
        """Nothing to release."""

    def _fenced(self, lease: Lease) -> _Run:
        run = self._runs.get(lease.run_id)
        if run is None:
            raise RunNotFoundError(f"no run {lease.run_id}")
        if run.epoch != lease.epoch:
            raise LeaseLostError(
                f"run {lease.run_id} is owned by a newer lease (epoch {run.epoch} > {lease.epoch})"
            )
        if run.lease_owner is None:
            # Released: the run may be claimed again, so its old holder must not write.
            raise LeaseLostError(f"run {lease.run_id}: lease epoch {lease.epoch} was released")
        return run


def _lease_live(run: _Run, now: datetime) -> bool:
    return run.lease_expires_at is not None and run.lease_expires_at > now


def _claimable_next(record: _Run, now: datetime) -> bool:
    if record.started.agent_ref is None:
        return False  # only a process holding the agent can run it: claim it by id
    if record.status is RunStatus.PENDING:
        return not _lease_live(record, now)
    return record.status is RunStatus.RUNNING and not _lease_live(record, now)


def _claimable_by_id(record: _Run, now: datetime) -> bool:
    return record.status in CLAIMABLE_BY_ID and not _lease_live(record, now)
