"""The store seam: run rows, journals and leases.

A run's truth is its journal, the ordered list of its events; the run row (status, lease)
is an index over it, updated in the same transaction as each append. Implementations:
:class:`~tether.store.InMemoryStore` (tests, benchmarks) and
:class:`~tether.store.SqliteStore` (the embedded default).

Ownership and fencing: a worker *claims* a run and gets a :class:`Lease` with a new
``epoch``. Every append names its lease; the store refuses it with
:class:`~tether.errors.LeaseLostError` unless that epoch is still current, so a worker
that was paused or lost its lease can never write again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from tether.events import Event, RunStarted
from tether.status import RunStatus

__all__ = ["CLAIMABLE_BY_ID", "Lease", "Remembered", "RunRecord", "Store"]

CLAIMABLE_BY_ID = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.NEEDS_REVIEW, RunStatus.WAITING_APPROVAL}
)
"""Statuses in which a run can be claimed by id (``running`` only once its lease expired)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """The right to write a run's journal, until ``expires_at`` or a newer epoch."""

    run_id: str
    owner: str
    """Who holds it (for example ``worker-host-1234``)."""
    epoch: int
    """Fencing token: increases at every claim of the run."""
    attempts: int
    """Claims since the run last released its lease cleanly, this one included. A value
    above 1 means earlier owners died holding it."""
    expires_at: datetime
    """When the lease lapses on the store's clock (UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """The row of a run: what it is and where it is. Its journal holds the detail."""

    run_id: str
    agent: str
    agent_ref: str | None
    user: str | None
    task: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    finished_at: datetime | None
    """When the terminal ``RunFinished`` event was written; ``None`` while the run can
    still move (``needs_review`` from an in-doubt call included)."""
    events: int
    """Number of journal events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Remembered:
    """A value kept across runs until ``expires_at`` (see :meth:`Store.remember`)."""

    value: str
    source: str | None
    """The run that remembered it, if any."""
    expires_at: datetime
    """When it is forgotten, on the store's clock (UTC)."""


@runtime_checkable
class Store(Protocol):
    """Runs, their append-only journals and their leases."""

    async def create_run(
        self,
        started: RunStarted,
        *,
        owner: str | None = None,
        lease_for: timedelta | None = None,
    ) -> Lease | None:
        """Accept a run: its row and its first event, in one transaction.

        Without ``owner`` the run is ``pending`` and ``None`` is returned. With ``owner``
        (and ``lease_for``) it is created already claimed by ``owner``, as
        :meth:`claim` would (saving a transaction), and its lease is returned.

        Raises:
            RunStateError: A run with this id exists.
        """
        ...

    async def claim(
        self, owner: str, *, lease_for: timedelta, run_id: str | None = None, force: bool = False
    ) -> Lease | None:
        """Claim a run: bump its epoch, count the attempt, mark it ``running``.

        Without ``run_id``, claims the oldest ``pending`` run or ``running`` run whose lease
        expired, among runs with an ``agent_ref`` (others can only be claimed by id, by a
        process that holds the agent). With ``run_id``, claims that run if its status is in
        :data:`CLAIMABLE_BY_ID` and no live lease holds it; ``force`` takes it even from a
        live owner (cancellation). A finished run is never claimed. Returns ``None`` when
        nothing is claimable.

        Raises:
            RunNotFoundError: ``run_id`` is unknown.
        """
        ...

    async def renew(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        """Extend a lease.

        Raises ``LeaseLostError`` if its epoch is no longer current or it was released.
        """
        ...

    async def release(self, lease: Lease) -> None:
        """Give a run up cleanly: clear the owner and reset the attempt count.

        A run still ``running`` goes back to ``pending``. A lost lease is ignored.
        """
        ...

    async def append(self, events: Sequence[Event], lease: Lease, *, release: bool = False) -> None:
        """Append ``events`` (all of ``lease.run_id``) in one transaction.

        The run's status moves as the events say (see ``tether.events.status_after``).
        With ``release`` the lease is also released (see :meth:`release`) in the same
        transaction, saving one at the end of a run.

        Raises:
            LeaseLostError: ``lease.epoch`` is no longer current, or the lease was
                released. Nothing was written.
        """
        ...

    async def events(self, run_id: str) -> Sequence[Event]:
        """Return the journal of ``run_id`` in order (empty if the run is unknown)."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the row of ``run_id``, or ``None``."""
        ...

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int | None = None,
    ) -> Sequence[RunRecord]:
        """Return runs, newest first, optionally filtered."""
        ...

    async def prune(self, *, finished_before: datetime) -> int:
        """Delete runs finished before the time, with their journals; return how many.

        Expired remembered values are deleted too. See ``RunRecord.finished_at``.
        """
        ...

    async def remember(
        self, namespace: str, key: str, value: str, *, ttl: timedelta, source: str | None = None
    ) -> None:
        """Keep ``value`` under ``(namespace, key)`` for ``ttl``, replacing an earlier one.

        Not fenced by a lease: the value is shared by every run (a deduplicated tool
        call's result, for example).
        """
        ...

    async def recall(self, namespace: str, key: str) -> Remembered | None:
        """Return what is remembered under ``(namespace, key)`` and not expired, or ``None``."""
        ...

    async def close(self) -> None:
        """Release resources (connections). The store is unusable afterwards."""
        ...
