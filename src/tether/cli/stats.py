"""``tether stats`` and ``tether feedback``: how the fleet is doing, and what users said.

``tether stats`` first computes the metrics of finished runs that have none yet (from
their journals), then reports per agent, over ``--since`` (default 7 days): runs,
completion rate, error rate by class, escalation rate, degraded rate, cost per task,
steps and tokens per run (median and p95), satisfaction, and drift alerts (checked now
with the default :class:`~tether.observe.drift.DriftPolicy`, delivered to the log).
"""

from __future__ import annotations

import getpass
import math
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

import typer

from tether.cli.common import JsonOption, StoreOption, execute, out, print_json
from tether.cli.inspect import parse_age
from tether.observe.drift import check_drift, recorded_alerts
from tether.observe.feedback import feedback_book
from tether.observe.runs import RunMetrics, run_metrics_book
from tether.runtime import Tether
from tether.status import RunStatus

__all__ = ["register", "summarise"]


def register(app: typer.Typer) -> None:
    """Add ``tether stats`` and ``tether feedback`` to ``app``."""
    app.command()(stats)
    app.command()(feedback)


def stats(
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    since: Annotated[str, typer.Option(help="How far back: 30m, 12h, 7d.")] = "7d",
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Completion, errors, escalations, cost, steps, tokens, satisfaction and drift per agent."""
    try:
        window = parse_age(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None

    async def act(runtime: Tether) -> dict[str, Any]:
        await check_drift(runtime.store, clock=runtime.clock)
        start = runtime.clock.now() - window
        runs = await run_metrics_book(runtime.store).recorded(agent=agent, since=start)
        scores = {f.run_id: f.score for f in await feedback_book(runtime.store).all()}
        alerts = [
            a
            for a in await recorded_alerts(runtime.store, since=start)
            if agent is None or a.agent == agent
        ]
        report: dict[str, Any] = {"since": start.isoformat(), "agents": {}}
        for name in sorted({r.agent for r in runs}):
            mine = [r for r in runs if r.agent == name]
            report["agents"][name] = {
                **summarise(mine, scores),
                "drift_alerts": [
                    {
                        "metric": a.metric,
                        "baseline": a.baseline,
                        "recent": a.recent,
                        "ratio": a.ratio,
                        "at": a.at.isoformat(),
                    }
                    for a in alerts
                    if a.agent == name
                ],
            }
        return report

    report = execute(store, act)
    if as_json:
        print_json(report)
        return
    if not report["agents"]:
        out.print(f"no finished runs since {report['since']}", highlight=False)
        return
    for name, figures in report["agents"].items():
        _print_agent(name, figures)


def summarise(runs: Sequence[RunMetrics], scores: dict[str, int]) -> dict[str, Any]:
    """The figures ``tether stats`` reports for one agent's runs (amounts as strings)."""
    count = len(runs)
    errors = Counter(
        r.error_class or r.status.value for r in runs if r.status is not RunStatus.COMPLETED
    )
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    rated = [scores[r.run_id] for r in runs if r.run_id in scores]
    return {
        "runs": count,
        "completion_rate": _rate(sum(r.status is RunStatus.COMPLETED for r in runs), count),
        "error_rate": _rate(sum(errors.values()), count),
        "errors_by_class": dict(errors.most_common()),
        "escalation_rate": _rate(sum(r.escalations > 0 for r in runs), count),
        "degraded_rate": _rate(sum(r.degraded for r in runs), count),
        "cost_per_task_usd": str(sum(costs, Decimal(0)) / len(costs)) if costs else None,
        "unknown_cost_runs": count - len(costs),
        "steps_per_run": _spread([r.steps for r in runs]),
        "tokens_per_run": _spread([r.input_tokens + r.output_tokens for r in runs]),
        "satisfaction": {
            "mean": round(statistics.fmean(rated), 2) if rated else None,
            "ratings": len(rated),
        },
    }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"median": 0, "p95": 0}
    ordered = sorted(values)
    p95 = ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]
    return {"median": statistics.median(ordered), "p95": p95}


def _print_agent(name: str, figures: dict[str, Any]) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in figures["errors_by_class"].items()) or "none"
    satisfaction = figures["satisfaction"]
    lines = [
        f"{name}: {figures['runs']} runs · completed {figures['completion_rate']:.0%} · "
        f"errors {figures['error_rate']:.0%} ({errors})",
        f"  escalated {figures['escalation_rate']:.0%} · degraded {figures['degraded_rate']:.0%}"
        f" · cost per task ${figures['cost_per_task_usd'] or 'unknown'}",
        f"  steps per run median {figures['steps_per_run']['median']} p95 "
        f"{figures['steps_per_run']['p95']} · tokens per run median "
        f"{figures['tokens_per_run']['median']} p95 {figures['tokens_per_run']['p95']}",
        f"  satisfaction {satisfaction['mean'] if satisfaction['mean'] is not None else '-'}"
        f" ({satisfaction['ratings']} ratings)",
    ]
    lines.extend(
        f"  drift: {a['metric']} {a['baseline']:.4g} -> {a['recent']:.4g} (x{a['ratio']:.2f})"
        for a in figures["drift_alerts"]
    )
    for line in lines:
        out.print(line, highlight=False, markup=False)


def feedback(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    score: Annotated[int, typer.Option(help="Satisfaction, 1 (bad) to 5 (excellent).")],
    comment: Annotated[str | None, typer.Option(help="What the user said.")] = None,
    by: Annotated[
        str | None, typer.Option("--as", help="Who gives it. Default: $TETHER_USER or login.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Record a user's satisfaction with a run (the latest replaces earlier feedback)."""
    who = by or os.environ.get("TETHER_USER") or getpass.getuser()
    execute(
        store,
        lambda runtime: feedback_book(runtime.store).record(run_id, score, comment=comment, by=who),
    )
    out.print(f"feedback {score}/5 recorded for {run_id}", highlight=False, markup=False)
