"""Per-run metrics, computed from finished runs' journals and kept in the store.

:func:`run_metrics` is pure: a finished run's events in, a :class:`RunMetrics` out (steps,
tool calls, tokens, cost, duration, tool errors, escalations, degraded). A
:class:`RunMetricsBook` (from :func:`run_metrics_book`) keeps them: the ``run_metrics``
table of a SQLite store (schema 11), or a dict for an in-memory store.
:meth:`RunMetricsBook.catch_up` computes the metrics of every finished run that has none
yet, so nothing in the run loop has to write them.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from tether.errors import ConfigurationError
from tether.events import (
    ApprovalRequested,
    BudgetExhausted,
    ContextCompacted,
    Event,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
)
from tether.messages import add_costs
from tether.status import RunStatus
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = ["RunMetrics", "RunMetricsBook", "run_metrics", "run_metrics_book"]

_MICROS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMetrics:
    """What one finished run did and cost."""

    run_id: str
    agent: str
    user: str | None
    status: RunStatus
    finished_at: datetime
    duration_s: float
    """From its start to its end, in seconds (waits for people included)."""
    steps: int
    """Model responses and tool calls."""
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    """``None`` when any response's cost was unknown."""
    tool_errors: int
    error_class: str | None
    escalations: int
    """Calls in doubt, approval requests, budget waits, and a ``needs_review`` ending."""
    degraded: bool
    """A fallback model or tool served part of the run."""


def run_metrics(events: Sequence[Event]) -> RunMetrics | None:
    """Compute a finished run's metrics from its journal; ``None`` if it has not finished."""
    if not events or not isinstance(events[0], RunStarted):
        return None
    started, finished = events[0], events[-1]
    if not isinstance(finished, RunFinished):
        return None
    steps = tool_calls = input_tokens = output_tokens = tool_errors = escalations = 0
    cost: Decimal | None = Decimal(0)
    degraded = False
    for event in events:
        match event:
            case ModelResponded(step=step, response=response):
                steps = max(steps, step)
                input_tokens += response.usage.input_tokens
                output_tokens += response.usage.output_tokens
                cost = add_costs(cost, response.cost_usd)
                degraded = degraded or response.degraded
            case ContextCompacted(usage=usage, cost_usd=spent):  # a model summary's cost
                input_tokens += usage.input_tokens
                output_tokens += usage.output_tokens
                cost = add_costs(cost, spent)
            case ToolCallFinished(step=step):
                steps = max(steps, step)
                tool_calls += 1
                tool_errors += event.is_error
                degraded = degraded or event.tier is not None
            case ToolCallInDoubt() | ApprovalRequested() | BudgetExhausted():
                escalations += 1
            case _:
                pass
    if finished.status is RunStatus.NEEDS_REVIEW:
        escalations += 1
    return RunMetrics(
        run_id=started.run_id,
        agent=started.agent,
        user=started.user,
        status=finished.status,
        finished_at=finished.at,
        duration_s=max(0.0, (finished.at - started.at).total_seconds()),
        steps=steps,
        tool_calls=tool_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        tool_errors=tool_errors,
        error_class=finished.error_class,
        escalations=escalations,
        degraded=degraded,
    )


class RunMetricsBook(Protocol):
    """Where finished runs' metrics are kept."""

    async def record(self, metrics: RunMetrics) -> None:
        """Keep ``metrics`` (replacing what was kept for that run)."""
        ...

    async def recorded(
        self, *, agent: str | None = None, since: datetime | None = None
    ) -> list[RunMetrics]:
        """Kept metrics, oldest first, of one agent and finished since a time if given."""
        ...

    async def catch_up(self) -> int:
        """Compute and keep the metrics of finished runs that have none; return how many."""
        ...


def run_metrics_book(store: Store) -> RunMetricsBook:
    """Return the run metrics kept in ``store``.

    Raises:
        ConfigurationError: The store keeps no run metrics.
    """
    if isinstance(store, SqliteStore):
        return _SqliteRunMetrics(store)
    if isinstance(store, InMemoryStore):
        kept = _memory.get(store)
        if kept is None:
            kept = _memory[store] = {}
        return _MemoryRunMetrics(store, kept)
    raise ConfigurationError(f"{type(store).__name__} keeps no run metrics")


async def _catch_up(store: Store, book: RunMetricsBook, known: set[str]) -> int:
    added = 0
    for record in await store.list_runs():
        if record.finished_at is None or record.run_id in known:
            continue
        metrics = run_metrics(await store.events(record.run_id))
        if metrics is not None:
            await book.record(metrics)
            added += 1
    return added


def _matches(metrics: RunMetrics, agent: str | None, since: datetime | None) -> bool:
    return (agent is None or metrics.agent == agent) and (
        since is None or metrics.finished_at >= since
    )


_memory: weakref.WeakKeyDictionary[InMemoryStore, dict[str, RunMetrics]] = (
    weakref.WeakKeyDictionary()
)


class _MemoryRunMetrics:
    def __init__(self, store: InMemoryStore, kept: dict[str, RunMetrics]) -> None:
        self._store = store
        self._kept = kept

    async def record(self, metrics: RunMetrics) -> None:
        self._kept[metrics.run_id] = metrics

    async def recorded(
        self, *, agent: str | None = None, since: datetime | None = None
    ) -> list[RunMetrics]:
        found = [m for m in self._kept.values() if _matches(m, agent, since)]
        return sorted(found, key=lambda m: m.finished_at)

    async def catch_up(self) -> int:
        return await _catch_up(self._store, self, set(self._kept))


_COLUMNS = (
    "run_id, agent, user_id, status, finished_at, duration_s, steps, tool_calls, "
    "input_tokens, output_tokens, cost_micros, tool_errors, error_class, escalations, degraded"
)


class _SqliteRunMetrics:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(self, metrics: RunMetrics) -> None:
        row = (
            metrics.run_id,
            metrics.agent,
            metrics.user,
            metrics.status.value,
            metrics.finished_at.timestamp(),
            metrics.duration_s,
            metrics.steps,
            metrics.tool_calls,
            metrics.input_tokens,
            metrics.output_tokens,
            None if metrics.cost_usd is None else int(metrics.cost_usd * _MICROS),
            metrics.tool_errors,
            metrics.error_class,
            metrics.escalations,
            int(metrics.degraded),
        )

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO run_metrics ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                row,
            )

        await self._store.write(work)

    async def recorded(
        self, *, agent: str | None = None, since: datetime | None = None
    ) -> list[RunMetrics]:
        rows = self._store.query(
            f"SELECT {_COLUMNS} FROM run_metrics WHERE (? IS NULL OR agent = ?) "
            "AND (? IS NULL OR finished_at >= ?) ORDER BY finished_at, run_id",
            agent,
            agent,
            None if since is None else since.timestamp(),
            None if since is None else since.timestamp(),
        )
        return [_from_row(row) for row in rows]

    async def catch_up(self) -> int:
        known = {row[0] for row in self._store.query("SELECT run_id FROM run_metrics")}
        return await _catch_up(self._store, self, known)


def _from_row(row: Sequence[Any]) -> RunMetrics:
    (run_id, agent, user, status, finished_at, duration_s, steps, tool_calls) = row[:8]
    (input_tokens, output_tokens, cost_micros, tool_errors, error_class) = row[8:13]
    escalations, degraded = row[13:]
    return RunMetrics(
        run_id=run_id,
        agent=agent,
        user=user,
        status=RunStatus(status),
        finished_at=datetime.fromtimestamp(finished_at, UTC),
        duration_s=float(duration_s),
        steps=int(steps),
        tool_calls=int(tool_calls),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        cost_usd=None if cost_micros is None else Decimal(cost_micros) / _MICROS,
        tool_errors=int(tool_errors),
        error_class=error_class,
        escalations=int(escalations),
        degraded=bool(degraded),
    )
