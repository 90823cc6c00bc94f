"""Drift: an agent's recent runs compared with its own baseline, with evidence.

:func:`detect_drift` is pure: per-run metrics (:mod:`tether.observe.runs`) and a
:class:`DriftPolicy` in, :class:`DriftAlert` values out. For each agent it compares the
runs that finished in the recent window with those of the baseline window just before
it, on steps per run, tokens per run, cost per task and error rate, and raises an alert
when the recent value passes ``threshold * baseline``. Both windows need ``min_runs``.

:func:`check_drift` does the I/O: it catches up the stored run metrics, detects, keeps
each new alert (``alerts`` table, schema 11) and hands it to the :class:`AlertSink`
sinks (a :class:`LogAlertSink` by default). An alert for the same agent and metric is not
raised twice within one recent window.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import statistics
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tether.clock import Clock
from tether.errors import ConfigurationError
from tether.observe.runs import RunMetrics, run_metrics_book
from tether.status import RunStatus
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = [
    "AlertSink",
    "DriftAlert",
    "DriftPolicy",
    "LogAlertSink",
    "check_drift",
    "detect_drift",
]

alerts_logger = logging.getLogger("tether.alerts")


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftPolicy:
    """When an agent's recent runs count as drifting from its baseline.

    Raises:
        ConfigurationError: Windows that are not positive, ``min_runs`` below 1, or a
            threshold not above 1.
    """

    recent: timedelta = timedelta(days=1)
    """The recent window, ending now. Default 1 day."""
    baseline: timedelta = timedelta(days=7)
    """The baseline window, ending where the recent one starts. Default 7 days."""
    min_runs: int = 10
    """Runs each window needs before anything is judged. Default 10."""
    thresholds: Mapping[str, float] = field(
        default_factory=lambda: {
            "steps_per_run": 1.5,
            "tokens_per_run": 1.5,
            "cost_per_task": 1.5,
            "error_rate": 2.0,
        }
    )
    """Metric -> ratio of recent to baseline that alerts. Default: steps, tokens and cost
    ×1.5, error rate ×2."""
    error_rate_floor: float = 0.02
    """The error rate a baseline of 0 is judged against (so 0 → 1 % does not alert)."""

    def __post_init__(self) -> None:
        if not (self.recent.total_seconds() > 0 and self.baseline.total_seconds() > 0):
            raise ConfigurationError("the recent and baseline windows must be positive")
        if self.min_runs < 1:
            raise ConfigurationError("min_runs must be at least 1")
        for metric, ratio in self.thresholds.items():
            if metric not in _MEASURES:
                known = ", ".join(sorted(_MEASURES))
                raise ConfigurationError(f"unknown drift metric {metric!r}; known: {known}")
            if not ratio > 1:
                raise ConfigurationError(f"the threshold of {metric} must be above 1")
        object.__setattr__(self, "thresholds", dict(self.thresholds))


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftAlert:
    """An agent's metric moved past its threshold."""

    agent: str
    metric: str
    baseline: float
    recent: float
    ratio: float
    """``recent / baseline`` (the baseline floored for error rates)."""
    evidence: dict[str, Any]
    """Run counts and window bounds behind the figures."""
    at: datetime


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


_MEASURES: dict[str, Callable[[Sequence[RunMetrics]], float | None]] = {
    "steps_per_run": lambda runs: _mean([r.steps for r in runs]),
    "tokens_per_run": lambda runs: _mean([r.input_tokens + r.output_tokens for r in runs]),
    "cost_per_task": lambda runs: _mean(
        [float(r.cost_usd) for r in runs if r.cost_usd is not None]
    ),
    "error_rate": lambda runs: _mean([float(r.status is not RunStatus.COMPLETED) for r in runs]),
}


def detect_drift(
    metrics: Sequence[RunMetrics], *, now: datetime, policy: DriftPolicy | None = None
) -> list[DriftAlert]:
    """Compare each agent's recent runs with its baseline; return the alerts, by agent."""
    policy = policy if policy is not None else DriftPolicy()
    recent_from = now - policy.recent
    baseline_from = recent_from - policy.baseline
    alerts: list[DriftAlert] = []
    for agent in sorted({m.agent for m in metrics}):
        runs = [m for m in metrics if m.agent == agent]
        recent = [m for m in runs if recent_from <= m.finished_at <= now]
        baseline = [m for m in runs if baseline_from <= m.finished_at < recent_from]
        if len(recent) < policy.min_runs or len(baseline) < policy.min_runs:
            continue
        evidence = {
            "recent_runs": len(recent),
            "baseline_runs": len(baseline),
            "recent_from": recent_from.isoformat(),
            "baseline_from": baseline_from.isoformat(),
            "until": now.isoformat(),
        }
        for metric, threshold in policy.thresholds.items():
            before, after = _MEASURES[metric](baseline), _MEASURES[metric](recent)
            if before is None or after is None:
                continue
            floor = max(before, policy.error_rate_floor) if metric == "error_rate" else before
            if floor <= 0:
                continue
            ratio = after / floor
            if ratio >= threshold:
                alerts.append(
                    DriftAlert(
                        agent=agent,
                        metric=metric,
                        baseline=before,
                        recent=after,
                        ratio=round(ratio, 4),
                        evidence={**evidence, "threshold": threshold},
                        at=now,
                    )
                )
    return alerts


class AlertSink(Protocol):
    """Where alerts go (a log by default; notification channels implement this)."""

    def deliver(self, alert: DriftAlert) -> None:
        """Deliver one alert."""
        ...


class LogAlertSink:
    """Logs each alert as a WARNING on the ``tether.alerts`` logger, with its evidence."""

    def deliver(self, alert: DriftAlert) -> None:
        """Log ``alert``."""
        alerts_logger.warning(
            "agent %s drifts: %s %.4g -> %.4g (x%.2f)",
            alert.agent,
            alert.metric,
            alert.baseline,
            alert.recent,
            alert.ratio,
            extra={"agent": alert.agent, "metric": alert.metric, **alert.evidence},
        )


async def check_drift(
    store: Store,
    *,
    clock: Clock,
    policy: DriftPolicy | None = None,
    sinks: Sequence[AlertSink] = (),
) -> list[DriftAlert]:
    """Catch up run metrics, detect drift, keep and deliver the new alerts; return them.

    Args:
        store: Where runs, their metrics and the alerts are kept.
        clock: What "now" is.
        policy: Default :class:`DriftPolicy()`.
        sinks: Where new alerts go. Default: a :class:`LogAlertSink`.
    """
    policy = policy if policy is not None else DriftPolicy()
    book = run_metrics_book(store)
    await book.catch_up()
    now = clock.now()
    found = detect_drift(await book.recorded(), now=now, policy=policy)
    kept = _alerts(store)
    raised = {(a.agent, a.metric) for a in await kept.since(now - policy.recent)}
    new = [a for a in found if (a.agent, a.metric) not in raised]
    for alert in new:
        await kept.record(alert)
        for sink in sinks or (LogAlertSink(),):
            sink.deliver(alert)
    return new


async def recorded_alerts(store: Store, *, since: datetime) -> list[DriftAlert]:
    """The alerts kept in ``store`` since a time, oldest first."""
    return await _alerts(store).since(since)


class _AlertBook(Protocol):
    async def record(self, alert: DriftAlert) -> None: ...

    async def since(self, since: datetime) -> list[DriftAlert]: ...


def _alerts(store: Store) -> _AlertBook:
    if isinstance(store, SqliteStore):
        return _SqliteAlerts(store)
    if isinstance(store, InMemoryStore):
        kept = _memory.get(store)
        if kept is None:
            kept = _memory[store] = []
        return _MemoryAlerts(kept)
    raise ConfigurationError(f"{type(store).__name__} keeps no alerts")


_memory: weakref.WeakKeyDictionary[InMemoryStore, list[DriftAlert]] = weakref.WeakKeyDictionary()


class _MemoryAlerts:
    def __init__(self, kept: list[DriftAlert]) -> None:
        self._kept = kept

    async def record(self, alert: DriftAlert) -> None:
        self._kept.append(alert)

    async def since(self, since: datetime) -> list[DriftAlert]:
        return [a for a in self._kept if a.at >= since]


class _SqliteAlerts:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(self, alert: DriftAlert) -> None:
        row = (
            uuid.uuid4().hex,
            alert.agent,
            alert.metric,
            alert.baseline,
            alert.recent,
            alert.ratio,
            json.dumps(alert.evidence),
            alert.at.timestamp(),
        )

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

        await self._store.write(work)

    async def since(self, since: datetime) -> list[DriftAlert]:
        rows = self._store.query(
            "SELECT agent, metric, baseline, recent, ratio, evidence, at FROM alerts "
            "WHERE at >= ? ORDER BY at",
            since.timestamp(),
        )
        return [
            DriftAlert(
                agent=agent,
                metric=metric,
                baseline=baseline,
                recent=recent,
                ratio=ratio,
                evidence=json.loads(evidence),
                at=datetime.fromtimestamp(at, UTC),
            )
            for agent, metric, baseline, recent, ratio, evidence, at in rows
        ]
