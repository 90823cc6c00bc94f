"""Drift detection on synthetic per-run metrics, on a fake clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tether.errors import ConfigurationError
from tether.observe.drift import DriftPolicy, LogAlertSink, check_drift, detect_drift
from tether.observe.runs import RunMetrics, run_metrics_book
from tether.status import RunStatus
from tether.store import InMemoryStore
from tether.testing import FakeClock

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _run(
    i: int, *, age: timedelta, steps: int = 4, cost: str = "0.1", ok: bool = True, agent: str = "a"
) -> RunMetrics:
    return RunMetrics(
        run_id=f"{agent}-{i}-{age.total_seconds()}",
        agent=agent,
        user=None,
        status=RunStatus.COMPLETED if ok else RunStatus.FAILED,
        finished_at=NOW - age,
        duration_s=1.0,
        steps=steps,
        tool_calls=steps // 2,
        input_tokens=100 * steps,
        output_tokens=10,
        cost_usd=Decimal(cost),
        tool_errors=0,
        error_class=None if ok else "tool_error",
        escalations=0,
        degraded=False,
    )


def _history(recent: dict[str, object], n: int = 12) -> list[RunMetrics]:
    baseline = [_run(i, age=timedelta(days=3, hours=i)) for i in range(n)]
    latest = [_run(i, age=timedelta(hours=i), **recent) for i in range(n)]  # type: ignore[arg-type]
    return baseline + latest


def test_stable_agents_raise_nothing() -> None:
    assert detect_drift(_history({}), now=NOW) == []


def test_more_steps_per_run_alerts_with_evidence() -> None:
    [steps, tokens] = detect_drift(_history({"steps": 7}), now=NOW)
    assert (steps.metric, steps.baseline, steps.recent) == ("steps_per_run", 4, 7)
    assert steps.ratio == 1.75 and tokens.metric == "tokens_per_run"
    assert steps.evidence["recent_runs"] == 12 and steps.evidence["baseline_runs"] == 12
    assert steps.evidence["threshold"] == 1.5


def test_cost_and_error_rate() -> None:
    [cost] = detect_drift(_history({"cost": "0.16"}), now=NOW)
    assert cost.metric == "cost_per_task" and cost.ratio == 1.6
    history = _history({}) + [_run(i, age=timedelta(minutes=i), ok=False) for i in range(3)]
    [errors] = detect_drift(history, now=NOW)
    assert errors.metric == "error_rate" and errors.baseline == 0.0
    assert errors.recent == pytest.approx(3 / 15)


def test_too_few_runs_are_not_judged() -> None:
    assert detect_drift(_history({"steps": 9}, n=5), now=NOW) == []
    assert detect_drift(_history({"steps": 9}, n=5), now=NOW, policy=DriftPolicy(min_runs=5))


@pytest.mark.parametrize(
    "policy",
    [
        {"recent": timedelta(0)},
        {"min_runs": 0},
        {"thresholds": {"steps_per_run": 1.0}},
        {"thresholds": {"vibes": 2.0}},
    ],
)
def test_bad_policies_are_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        DriftPolicy(**policy)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_check_drift_keeps_and_delivers_each_alert_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryStore()
    book = run_metrics_book(store)
    for metrics in _history({"steps": 8}):
        await book.record(metrics)
    clock = FakeClock(start=NOW)
    delivered = []

    class Sink:
        def deliver(self, alert: object) -> None:
            delivered.append(alert)

    first = await check_drift(store, clock=clock, sinks=[Sink()])
    assert [a.metric for a in first] == ["steps_per_run", "tokens_per_run"]
    assert delivered == first
    assert await check_drift(store, clock=clock, sinks=[Sink()]) == []  # not twice
    with caplog.at_level(logging.WARNING, logger="tether.alerts"):
        LogAlertSink().deliver(first[0])
    assert "agent a drifts: steps_per_run 4 -> 8" in caplog.text
