"""Money budgets: a cost circuit breaker that never overshoots.

A :class:`Budget` caps what runs may spend in a window of time (a day, an hour, or a
run's lifetime), for one run, one user, one agent or everybody. Before each model call
the run *reserves* the call's worst case (its input estimate plus ``max_output_tokens``
at the model's price) against every budget that applies, atomically and all or nothing;
after the call it *settles* the actual cost and releases the rest. Because a call only
starts with a reservation of its worst case, settled spend never passes a limit, however
many runs race for the same budget (the check-then-act overshoot of advisory budgets).

The ledger is a :class:`BudgetBook`, chosen from the store by :func:`budget_book`:

- :class:`SqliteBudgetBook`: the ``budget_windows`` and ``budget_reservations`` tables
  (schema 6) of a :class:`~tether.store.SqliteStore`, one transaction per operation,
  judged on the database clock, so every process sharing the file shares the budgets;
- :class:`MemoryBudgetBook`: dicts behind a lock, on an
  :class:`~tether.store.InMemoryStore`'s clock.

Amounts are kept in integer micro-dollars: reservations and charges are rounded up,
limits down, so rounding never lets spend pass a limit. A window starts at
``floor(now / window) * window`` (unix seconds, UTC) and spend is charged to the window
in which it was *reserved*, even when the call ends after the window closed.

A worker that dies mid-call leaves its reservation behind; :meth:`BudgetBook.release_lapsed`
releases reservations whose run finished, released its lease, lost it to a newer epoch
or let it expire.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, Protocol

from tether.clock import Clock
from tether.errors import ConfigurationError
from tether.governance.audit import AuditAction, AuditLog
from tether.messages import Message, ToolDefinition, estimate_tokens
from tether.models import ModelSettings
from tether.models.pricing import Price
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = [
    "AppliedBudget",
    "Budget",
    "BudgetBook",
    "BudgetScope",
    "Budgets",
    "Denied",
    "MemoryBudgetBook",
    "Reservation",
    "Settlement",
    "SqliteBudgetBook",
    "WindowUsage",
    "budget_book",
    "input_estimate",
]

logger = logging.getLogger("tether")

_MICROS = Decimal(1_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LABELS = {
    timedelta(minutes=1): "minute",
    timedelta(hours=1): "hour",
    timedelta(days=1): "day",
    timedelta(weeks=1): "week",
}
ANONYMOUS = "-"
"""The user of runs that have none: they share one per-user budget."""


class BudgetScope(StrEnum):
    """Whose spending a budget counts."""

    RUN = "run"
    """Each run separately."""
    USER = "user"
    """Each user separately (runs without a user share the user ``-``)."""
    AGENT = "agent"
    """Each agent (by name) separately."""
    GLOBAL = "global"
    """Every run together."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """A cap on spending in a window of time, for one scope.

    Build one with :meth:`per_run`, :meth:`per_user`, :meth:`per_agent` or
    :meth:`global_`. Each run it applies to gets a window keyed by :meth:`key`, such as
    ``user:ana:day``, ``global:hour`` or ``run:<id>``.
    """

    scope: BudgetScope
    limit_usd: Decimal
    """The most that may be spent in one window, in US dollars (at least 0)."""
    window: timedelta | None = None
    """Length of a window; windows are aligned on the unix epoch (a day is a UTC day).
    ``None``: one window that never ends (for a per-run budget, the run's lifetime)."""
    name: str | None = None
    """Label of the window in the key. Default: ``minute``, ``hour``, ``day``, ``week``,
    else ``<seconds>s``; nothing for a window of ``None``."""

    def __post_init__(self) -> None:
        if not isinstance(self.limit_usd, Decimal) or not self.limit_usd.is_finite():
            raise ConfigurationError(f"limit_usd must be a finite Decimal, not {self.limit_usd!r}")
        if self.limit_usd < 0:
            raise ConfigurationError(f"limit_usd must be at least 0, not {self.limit_usd}")
        if self.window is not None and self.window.total_seconds() < 1:
            raise ConfigurationError(f"window must be at least one second, not {self.window}")
        if self.name is not None and (not self.name or ":" in self.name):
            raise ConfigurationError(
                f"budget name must be non-empty without ':', not {self.name!r}"
            )

    @classmethod
    def per_run(cls, limit_usd: Decimal, *, window: timedelta | None = None) -> Budget:
        """A cap on each run (by default over its whole lifetime)."""
        return cls(scope=BudgetScope.RUN, limit_usd=limit_usd, window=window)

    @classmethod
    def per_user(
        cls, limit_usd: Decimal, *, window: timedelta | None = None, name: str | None = None
    ) -> Budget:
        """A cap on each user's runs together, for example per day."""
        return cls(scope=BudgetScope.USER, limit_usd=limit_usd, window=window, name=name)

    @classmethod
    def per_agent(
        cls, limit_usd: Decimal, *, window: timedelta | None = None, name: str | None = None
    ) -> Budget:
        """A cap on each agent's runs together."""
        return cls(scope=BudgetScope.AGENT, limit_usd=limit_usd, window=window, name=name)

    @classmethod
    def global_(
        cls, limit_usd: Decimal, *, window: timedelta | None = None, name: str | None = None
    ) -> Budget:
        """A cap on all runs together."""
        return cls(scope=BudgetScope.GLOBAL, limit_usd=limit_usd, window=window, name=name)

    @property
    def label(self) -> str | None:
        """The window's label in :meth:`key` (``None`` for a window of ``None``)."""
        if self.name is not None:
            return self.name
        if self.window is None:
            return None
        return _LABELS.get(self.window, f"{int(self.window.total_seconds())}s")

    @property
    def limit_micros(self) -> int:
        """:attr:`limit_usd` in micro-dollars, rounded down."""
        return int((self.limit_usd * _MICROS).to_integral_value(ROUND_FLOOR))

    def key(self, *, run_id: str, user: str | None, agent: str) -> str:
        """The budget row this budget uses for a run, such as ``user:ana:day``."""
        subject = {
            BudgetScope.RUN: run_id,
            BudgetScope.USER: user or ANONYMOUS,
            BudgetScope.AGENT: agent,
            BudgetScope.GLOBAL: None,
        }[self.scope]
        parts = [self.scope.value, subject, self.label]
        return ":".join(p for p in parts if p is not None)

    def window_start(self, now: float) -> float:
        """Start of the window holding ``now`` (both unix seconds); 0 for no window."""
        if self.window is None:
            return 0.0
        size = self.window.total_seconds()
        return math.floor(now / size) * size


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedBudget:
    """One budget applied to one run: the key of its window row, and the budget."""

    key: str
    budget: Budget


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Money set aside for one model call, to :meth:`~BudgetBook.settle` or release."""

    reservation_id: str
    run_id: str
    lease_epoch: int
    amount_micros: int
    windows: tuple[tuple[str, float], ...]
    """``(budget key, window start)`` of every window charged."""

    @property
    def amount_usd(self) -> Decimal:
        """The amount reserved, in US dollars."""
        return Decimal(self.amount_micros) / _MICROS


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """A reservation refused: nothing was reserved anywhere."""

    budget: str
    """Key of the tightest window that refused (least room left), such as ``user:ana:day``."""
    window_start: datetime
    limit_usd: Decimal
    remaining_usd: Decimal
    """What was left in that window (spent and reserved subtracted)."""
    requested_usd: Decimal
    reason: str = ""
    """Why, when it is not the amount (an unknown price)."""

    @property
    def message(self) -> str:
        """A one-line explanation for the run's error."""
        if self.reason:
            return f"budget {self.budget}: {self.reason}"
        return (
            f"budget {self.budget} refused ${self.requested_usd}: "
            f"${self.remaining_usd} left of ${self.limit_usd}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """What a settle did."""

    charged_micros: int
    released_micros: int
    clamped: bool = False
    """The actual cost was above the reservation; only the reservation was charged."""
    late: bool = False
    """The reservation had already been released (its run's lease lapsed); the cost was
    charged anyway, because it was spent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUsage:
    """One budget window: its limit and what is spent, reserved and left, in US dollars."""

    budget: str
    window_start: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        """What may still be reserved (never below 0)."""
        return max(Decimal(0), self.limit_usd - self.spent_usd - self.reserved_usd)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts as strings)."""
        return {
            "budget": self.budget,
            "window_start": self.window_start.isoformat(),
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "remaining_usd": str(self.remaining_usd),
        }


class BudgetBook(Protocol):
    """The ledger of budget windows and reservations."""

    async def reserve(
        self, run_id: str, lease_epoch: int, amount_usd: Decimal, budgets: Sequence[AppliedBudget]
    ) -> Reservation | Denied:
        """Reserve ``amount_usd`` in every window of ``budgets``, all or nothing."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: Decimal) -> Settlement:
        """Charge ``actual_usd`` (at most the reservation) and release the rest."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Release a reservation unused (the call failed or never started)."""
        ...

    async def release_lapsed(self) -> int:
        """Release reservations of runs that no longer hold the lease they reserved with."""
        ...

    async def usage(self) -> list[WindowUsage]:
        """Every window, ordered by budget key and start."""
        ...

    async def raise_limit(self, key: str, by_usd: Decimal) -> WindowUsage:
        """Add ``by_usd`` to the limit of the newest window of ``key``; return it.

        The raise stays with that window (a new day or hour starts at the configured
        limit again).

        Raises:
            ConfigurationError: ``by_usd`` is not a positive finite ``Decimal`` of at
                least one micro-dollar, or no window has this key.
        """
        ...


def _raise_micros(by_usd: Decimal) -> int:
    """A raise in micro-dollars, rounded down; refused unless it is positive."""
    if not isinstance(by_usd, Decimal) or not by_usd.is_finite():
        raise ConfigurationError(f"a raise must be a finite Decimal, not {by_usd!r}")
    micros = int((by_usd * _MICROS).to_integral_value(ROUND_FLOOR))
    if micros <= 0:
        raise ConfigurationError(f"a raise must be positive, not {by_usd}")
    return micros


def _no_window(key: str) -> ConfigurationError:
    return ConfigurationError(f"no budget window {key!r}; `tether budgets` lists them")


def _micros_up(usd: Decimal) -> int:
    return max(0, int((usd * _MICROS).to_integral_value(ROUND_CEILING)))


def _usd(micros: int) -> Decimal:
    return Decimal(micros) / _MICROS


def _at(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _refusal(
    slot: AppliedBudget, start: float, spent: int, reserved: int, amount: int, limit: int
) -> Denied:
    return Denied(
        budget=slot.key,
        window_start=_at(start),
        limit_usd=_usd(limit),
        remaining_usd=_usd(max(0, limit - spent - reserved)),
        requested_usd=_usd(amount),
    )


def _tightest(refusals: list[Denied]) -> Denied | None:
    return min(refusals, key=lambda d: (d.remaining_usd, d.limit_usd)) if refusals else None


def _charge(amount: int, actual_usd: Decimal) -> tuple[int, bool]:
    actual = _micros_up(actual_usd)
    if actual > amount:
        return amount, True
    return actual, False


def _new_reservation_id() -> str:
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------- SQLite

_UPSERT_WINDOW = """
INSERT INTO budget_windows (budget, window_start, limit_micros) VALUES (?, ?, ?)
ON CONFLICT (budget, window_start) DO UPDATE SET limit_micros = excluded.limit_micros
RETURNING spent_micros, reserved_micros, raised_micros
"""
# The guard is in the statement itself: a window moves only if the amount fits.
_RESERVE = """
UPDATE budget_windows SET reserved_micros = reserved_micros + :amount
WHERE budget = :budget AND window_start = :start
    AND spent_micros + reserved_micros + :amount <= limit_micros + raised_micros
"""
_UNRESERVE = """
UPDATE budget_windows SET reserved_micros = max(0, reserved_micros - :amount),
    spent_micros = spent_micros + :charged
WHERE budget = :budget AND window_start = :start
"""
_TAKE = "DELETE FROM budget_reservations WHERE reservation_id = ? RETURNING amount_micros, windows"
_LAPSED = """
SELECT b.reservation_id FROM budget_reservations AS b LEFT JOIN runs AS r ON r.run_id = b.run_id
WHERE r.run_id IS NULL OR r.finished_at IS NOT NULL OR r.lease_owner IS NULL
    OR r.lease_epoch != b.lease_epoch OR r.lease_expires_at <= ?
"""


class SqliteBudgetBook:
    """Budgets in a :class:`~tether.store.SqliteStore`'s file, shared by every process.

    Each operation is one write transaction of the store (``BEGIN IMMEDIATE``), so a
    reservation checks and moves every window it needs before any other writer can.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def reserve(
        self, run_id: str, lease_epoch: int, amount_usd: Decimal, budgets: Sequence[AppliedBudget]
    ) -> Reservation | Denied:
        """Reserve ``amount_usd`` in every window, all or nothing; see :class:`BudgetBook`."""
        amount = _micros_up(amount_usd)

        def work(conn: sqlite3.Connection, now: float) -> Reservation | Denied:
            windows: list[tuple[str, float]] = []
            moved_windows: list[tuple[str, float]] = []
            refusals: list[Denied] = []
            for slot in budgets:
                start = slot.budget.window_start(now)
                limit = slot.budget.limit_micros
                spent, reserved, raised = conn.execute(
                    _UPSERT_WINDOW, (slot.key, start, limit)
                ).fetchone()
                limit += raised
                moved = conn.execute(
                    _RESERVE, {"amount": amount, "budget": slot.key, "start": start}
                ).rowcount
                if moved != 1:
                    refusals.append(_refusal(slot, start, spent, reserved, amount, limit))
                else:
                    moved_windows.append((slot.key, start))
                windows.append((slot.key, start))
            denied = _tightest(refusals)
            if denied is not None:
                # All or nothing: give back what this call moved. The window rows stay,
                # so a person can raise the window that refused (`raise_limit`).
                for key, start in moved_windows:
                    conn.execute(
                        _UNRESERVE, {"amount": amount, "charged": 0, "budget": key, "start": start}
                    )
                return denied
            reservation = Reservation(
                reservation_id=_new_reservation_id(),
                run_id=run_id,
                lease_epoch=lease_epoch,
                amount_micros=amount,
                windows=tuple(windows),
            )
            conn.execute(
                "INSERT INTO budget_reservations VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.reservation_id, run_id, lease_epoch, amount, json.dumps(windows), now),
            )
            return reservation

        return await self.store.write(work)

    async def settle(self, reservation: Reservation, actual_usd: Decimal) -> Settlement:
        """Charge the actual cost and release the rest; see :class:`BudgetBook`."""
        charged, clamped = _charge(reservation.amount_micros, actual_usd)

        def work(conn: sqlite3.Connection, now: float) -> Settlement:
            held = conn.execute(_TAKE, (reservation.reservation_id,)).fetchone() is not None
            amount = reservation.amount_micros if held else 0
            for key, start in reservation.windows:
                conn.execute(
                    _UNRESERVE,
                    {"amount": amount, "charged": charged, "budget": key, "start": start},
                )
            return Settlement(
                charged_micros=charged,
                released_micros=amount - charged if held else 0,
                clamped=clamped,
                late=not held,
            )

        return _noted(await self.store.write(work), reservation)

    async def release(self, reservation: Reservation) -> None:
        """Release a reservation unused; releasing twice does nothing."""

        def work(conn: sqlite3.Connection, now: float) -> None:
            _release_rows(conn, [reservation.reservation_id])

        await self.store.write(work)

    async def release_lapsed(self) -> int:
        """Release reservations whose run's lease is gone; return how many."""

        def work(conn: sqlite3.Connection, now: float) -> int:
            ids = [row[0] for row in conn.execute(_LAPSED, (now,))]
            return _release_rows(conn, ids)

        return await self.store.write(work)

    async def usage(self) -> list[WindowUsage]:
        """Every window, ordered by budget key and start."""
        rows = self.store.query(
            "SELECT budget, window_start, limit_micros + raised_micros, spent_micros, "
            "reserved_micros FROM budget_windows ORDER BY budget, window_start"
        )
        return [
            WindowUsage(
                budget=budget,
                window_start=_at(start),
                limit_usd=_usd(limit),
                spent_usd=_usd(spent),
                reserved_usd=_usd(reserved),
            )
            for budget, start, limit, spent, reserved in rows
        ]

    async def raise_limit(self, key: str, by_usd: Decimal) -> WindowUsage:
        """Raise the newest window of ``key``; see :class:`BudgetBook`."""
        amount = _raise_micros(by_usd)

        def work(conn: sqlite3.Connection, now: float) -> WindowUsage:
            row = conn.execute(
                "UPDATE budget_windows SET raised_micros = raised_micros + ? "
                "WHERE budget = ? AND window_start = "
                "(SELECT max(window_start) FROM budget_windows WHERE budget = ?) "
                "RETURNING window_start, limit_micros + raised_micros, spent_micros, "
                "reserved_micros",
                (amount, key, key),
            ).fetchone()
            if row is None:
                raise _no_window(key)
            start, limit, spent, reserved = row
            return WindowUsage(
                budget=key,
                window_start=_at(start),
                limit_usd=_usd(limit),
                spent_usd=_usd(spent),
                reserved_usd=_usd(reserved),
            )

        return await self.store.write(work)


def _release_rows(conn: sqlite3.Connection, ids: Sequence[str]) -> int:
    released = 0
    for reservation_id in ids:
        row = conn.execute(_TAKE, (reservation_id,)).fetchone()
        if row is None:
            continue
        amount, windows = row
        for key, start in json.loads(windows):
            conn.execute(
                _UNRESERVE, {"amount": amount, "charged": 0, "budget": key, "start": start}
            )
        released += 1
    return released


def _noted(settlement: Settlement, reservation: Reservation) -> Settlement:
    if settlement.clamped:
        logger.warning(
            "run %s: a model call cost more than its reservation of $%s; charged the "
            "reservation (is max_output_tokens set?)",
            reservation.run_id,
            reservation.amount_usd,
        )
    if settlement.late:
        logger.warning(
            "run %s: settled a reservation already released (its lease lapsed)",
            reservation.run_id,
        )
    return settlement


# ----------------------------------------------------------------------------- memory


@dataclass(slots=True)
class _Window:
    limit: int
    spent: int = 0
    reserved: int = 0
    raised: int = 0

    def usage(self, key: str, start: float) -> WindowUsage:
        return WindowUsage(
            budget=key,
            window_start=_at(start),
            limit_usd=_usd(self.limit + self.raised),
            spent_usd=_usd(self.spent),
            reserved_usd=_usd(self.reserved),
        )


@dataclass(slots=True)
class _MemoryLedger:
    windows: dict[tuple[str, float], _Window] = field(
        default_factory=dict[tuple[str, float], _Window]
    )
    reservations: dict[str, Reservation] = field(default_factory=dict[str, Reservation])


class MemoryBudgetBook:
    """Budgets in dicts for an :class:`~tether.store.InMemoryStore`, on its clock.

    A lock makes each operation atomic between threads (``run_sync`` from a pool); the
    operations never await inside it, so they are atomic between tasks too.

    Args:
        store: The store whose runs (leases) and clock the budgets follow.
        clock: The clock windows are judged on. Default: the store's.
    """

    def __init__(self, store: InMemoryStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock if clock is not None else store._clock
        self._ledger = _MemoryLedger()
        self._lock = threading.Lock()

    def _now(self) -> float:
        return (self.clock.now() - _EPOCH).total_seconds()

    async def reserve(
        self, run_id: str, lease_epoch: int, amount_usd: Decimal, budgets: Sequence[AppliedBudget]
    ) -> Reservation | Denied:
        """Reserve ``amount_usd`` in every window, all or nothing; see :class:`BudgetBook`."""
        amount = _micros_up(amount_usd)
        with self._lock:
            now = self._now()
            found: list[tuple[tuple[str, float], _Window]] = []
            refusals: list[Denied] = []
            for slot in budgets:
                start = slot.budget.window_start(now)
                limit = slot.budget.limit_micros
                window = self._ledger.windows.setdefault((slot.key, start), _Window(limit))
                window.limit = limit
                limit += window.raised
                if window.spent + window.reserved + amount > limit:
                    refusals.append(
                        _refusal(slot, start, window.spent, window.reserved, amount, limit)
                    )
                found.append(((slot.key, start), window))
            denied = _tightest(refusals)
            if denied is not None:
                return denied
            for _, window in found:
                window.reserved += amount
            reservation = Reservation(
                reservation_id=_new_reservation_id(),
                run_id=run_id,
                lease_epoch=lease_epoch,
                amount_micros=amount,
                windows=tuple(where for where, _ in found),
            )
            self._ledger.reservations[reservation.reservation_id] = reservation
            return reservation

    async def settle(self, reservation: Reservation, actual_usd: Decimal) -> Settlement:
        """Charge the actual cost and release the rest; see :class:`BudgetBook`."""
        charged, clamped = _charge(reservation.amount_micros, actual_usd)
        with self._lock:
            held = self._ledger.reservations.pop(reservation.reservation_id, None) is not None
            amount = reservation.amount_micros if held else 0
            for where in reservation.windows:
                window = self._ledger.windows[where]
                window.reserved = max(0, window.reserved - amount)
                window.spent += charged
        settlement = Settlement(
            charged_micros=charged,
            released_micros=amount - charged if held else 0,
            clamped=clamped,
            late=not held,
        )
        return _noted(settlement, reservation)

    async def release(self, reservation: Reservation) -> None:
        """Release a reservation unused; releasing twice does nothing."""
        with self._lock:
            self._release(reservation.reservation_id)

    async def release_lapsed(self) -> int:
        """Release reservations whose run's lease is gone; return how many."""
        now = self.clock.now()
        with self._lock:
            doomed = [
                r.reservation_id for r in self._ledger.reservations.values() if self._lapsed(r, now)
            ]
            for reservation_id in doomed:
                self._release(reservation_id)
        return len(doomed)

    async def usage(self) -> list[WindowUsage]:
        """Every window, ordered by budget key and start."""
        with self._lock:
            items = sorted(self._ledger.windows.items())
            return [w.usage(key, start) for (key, start), w in items]

    async def raise_limit(self, key: str, by_usd: Decimal) -> WindowUsage:
        """Raise the newest window of ``key``; see :class:`BudgetBook`."""
        amount = _raise_micros(by_usd)
        with self._lock:
            starts = [start for (k, start) in self._ledger.windows if k == key]
            if not starts:
                raise _no_window(key)
            window = self._ledger.windows[(key, max(starts))]
            window.raised += amount
            return window.usage(key, max(starts))

    def _release(self, reservation_id: str) -> None:
        reservation = self._ledger.reservations.pop(reservation_id, None)
        if reservation is None:
            return
        for where in reservation.windows:
            window = self._ledger.windows[where]
            window.reserved = max(0, window.reserved - reservation.amount_micros)

    def _lapsed(self, reservation: Reservation, now: datetime) -> bool:
        # The in-memory store keeps epochs private; reading them here keeps the rule the
        # same as the SQLite book's (a newer claim makes the reservation stale).
        run = self.store._runs.get(reservation.run_id)
        if run is None:
            return True
        return (
            run.finished_at is not None
            or run.lease_owner is None
            or run.epoch != reservation.lease_epoch
            or (run.lease_expires_at is not None and run.lease_expires_at <= now)
        )


def budget_book(store: Store) -> BudgetBook:
    """The budget ledger of ``store``: SQL tables in a SQLite file, dicts in memory.

    Raises:
        ConfigurationError: The store is of another kind.
    """
    if isinstance(store, SqliteStore):
        return SqliteBudgetBook(store)
    if isinstance(store, InMemoryStore):
        return MemoryBudgetBook(store)
    raise ConfigurationError(f"budgets need a SqliteStore or an InMemoryStore, not {store!r}")


# ----------------------------------------------------------------------------- the hook


def input_estimate(messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> int:
    """A high estimate of a request's input tokens: :func:`~tether.messages.estimate_tokens`."""
    return estimate_tokens(messages, tools)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pricing:
    prices: Mapping[str, Price]
    assumed_output_tokens: int


class Budgets:
    """What the run loop calls around each live model call: reserve, then settle.

    Args:
        budgets: The budgets that apply to every run of the runtime.
        book: The ledger (see :func:`budget_book`).
        prices: Price of each model by its name (``Model.name``). A model without a price
            is refused while any budget applies: an unknown price never counts as zero.
        assumed_output_tokens: The output bound of a request whose
            ``ModelSettings.max_output_tokens`` is not set. Default 4096. Set
            ``max_output_tokens`` to make the bound exact.
        audit: Where each denial is recorded (one ``budget_denied`` entry naming the
            window). Default: not recorded.

    Raises:
        ConfigurationError: Two budgets would use the same window key.
    """

    def __init__(
        self,
        budgets: Sequence[Budget],
        book: BudgetBook,
        *,
        prices: Mapping[str, Price] | None = None,
        assumed_output_tokens: int = 4096,
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
        probe = [b.key(run_id="r", user="u", agent="a") for b in budgets]
        if len(set(probe)) != len(probe):
            raise ConfigurationError(f"two budgets share a window key: {sorted(probe)}")
        if assumed_output_tokens < 1:
            raise ConfigurationError("assumed_output_tokens must be at least 1")
        self.budgets = tuple(budgets)
        self.book = book
        self._pricing = _Pricing(
            prices=dict(prices or {}), assumed_output_tokens=assumed_output_tokens
        )

    def slots(self, *, run_id: str, user: str | None, agent: str) -> list[AppliedBudget]:
        """The windows a run's calls are charged to."""
        return [
            AppliedBudget(key=b.key(run_id=run_id, user=user, agent=agent), budget=b)
            for b in self.budgets
        ]

    def worst_case_usd(
        self,
        model: str,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> Decimal | None:
        """The most one request can cost in US dollars, or ``None`` if the price is unknown."""
        price = self._pricing.prices.get(model)
        if price is None:
            return None
        output = settings.max_output_tokens or self._pricing.assumed_output_tokens
        return (price.input * input_estimate(messages, tools) + price.output * output) / _MICROS

    async def reserve(
        self,
        *,
        run_id: str,
        lease_epoch: int,
        user: str | None,
        agent: str,
        model: str,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> Reservation | Denied:
        """Reserve the worst case of one request against every budget of the run."""
        slots = self.slots(run_id=run_id, user=user, agent=agent)
        amount = self.worst_case_usd(model, messages, tools, settings)
        if amount is None:
            first = slots[0]
            outcome: Reservation | Denied = Denied(
                budget=first.key,
                window_start=_EPOCH,
                limit_usd=first.budget.limit_usd,
                remaining_usd=Decimal(0),
                requested_usd=Decimal(0),
                reason=f"model {model!r} has no price, so the budget cannot be enforced",
            )
        else:
            outcome = await self.book.reserve(run_id, lease_epoch, amount, slots)
        if isinstance(outcome, Denied) and self.audit is not None:
            await self.audit.record(
                AuditAction.BUDGET_DENIED,
                actor=user or "system",
                run_id=run_id,
                subject=outcome.budget,
                reason=outcome.reason or f"the call would exceed {outcome.budget}",
            )
        return outcome

    async def settle(self, reservation: Reservation, cost_usd: Decimal | None) -> Settlement:
        """Charge a call's reported cost; an unknown cost charges the whole reservation."""
        actual = reservation.amount_usd if cost_usd is None else cost_usd
        return await self.book.settle(reservation, actual)

    async def release(self, reservation: Reservation) -> None:
        """Release the reservation of a call that failed or never ran."""
        await self.book.release(reservation)
