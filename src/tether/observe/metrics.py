"""Prometheus metrics from run events: runs, latency, tokens, cost, errors, escalations.

:class:`Metrics` is an event subscriber that owns a ``CollectorRegistry`` (a private one
by default, so two runtimes in one process never collide). Give it to
``Tether(subscribers=[...])``; read it with :meth:`Metrics.exposition`, or serve it with
:func:`serve_metrics` (``tether worker --metrics-port`` does).

Series (labels in braces; labels never hold run ids or users, so cardinality stays
bounded by agents, models, tools and error classes):

========================================== =============================================
``tether_runs_started_total{agent}``       runs this process started or took over
``tether_runs_total{agent,status}``        runs that ended, by terminal status
``tether_model_call_seconds{model}``       histogram: previous event to the response
``tether_tool_call_seconds{tool}``         histogram: a call's intent to its result
``tether_tokens_total{model,direction}``   input and output tokens
``tether_cost_usd_total{model}``           cost in US dollars (known costs only)
``tether_unknown_cost_total{model}``       responses whose cost was unknown
``tether_model_errors_total{model,error_class}``  failed model calls
``tether_model_retries_total{model}``      model requests retried before an answer
``tether_tool_errors_total{tool,error_class}``    tool results that are errors
``tether_escalations_total{kind}``         ``in_doubt``, ``approval``, ``budget``, ``needs_review``
``tether_approvals_waiting``               calls waiting for a person now
``tether_fallbacks_total{kind}``           ``model`` (degraded response) or ``tool`` (tier)
``tether_limit_hits_total{limit}``         runs ended by a limit
``tether_budget_spent_usd{budget}``        set by :meth:`Metrics.observe_budgets`
``tether_budget_remaining_usd{budget}``    set by :meth:`Metrics.observe_budgets`
``tether_breaker_state{breaker}``          0 closed, 1 half-open, 2 open (:meth:`Metrics.watch`)
========================================== =============================================
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    ContextCompacted,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.governance.budgets import WindowUsage
from tether.resilience import CircuitBreaker
from tether.status import RunStatus

__all__ = ["MAX_TRACKED_RUNS", "Metrics", "serve_metrics"]

logger = logging.getLogger("tether")

MAX_TRACKED_RUNS = 10_000
"""Runs whose timing state :class:`Metrics` keeps at once (oldest dropped first)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Seconds: from a fast tool to a slow model."""
_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class _Run:
    """What :class:`Metrics` remembers of one run between its events."""

    __slots__ = ("agent", "last_at", "model", "starts")

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.model = "unknown"
        """The model that last answered (a failed call has no response to name it)."""
        self.last_at: datetime | None = None
        self.starts: dict[int, datetime] = {}


class Metrics:
    """An event subscriber that keeps Prometheus metrics of every run it sees.

    Args:
        registry: Where the series live. Default: a new private registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.runs_started = Counter(
            "tether_runs_started", "Runs started or taken over.", ["agent"], registry=r
        )
        self.runs = Counter(
            "tether_runs", "Runs ended, by status.", ["agent", "status"], registry=r
        )
        self.model_seconds = Histogram(
            "tether_model_call_seconds",
            "Seconds from the previous event of a run to a model's answer.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_seconds = Histogram(
            "tether_tool_call_seconds",
            "Seconds from a tool call's intent to its result.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("tether_tokens", "Tokens used.", ["model", "direction"], registry=r)
        self.cost = Counter("tether_cost_usd", "Cost in US dollars.", ["model"], registry=r)
        self.unknown_cost = Counter(
            "tether_unknown_cost", "Responses whose cost is unknown.", ["model"], registry=r
        )
        self.model_errors = Counter(
            "tether_model_errors", "Failed model calls.", ["model", "error_class"], registry=r
        )
        self.tool_errors = Counter(
            "tether_tool_errors",
            "Tool results that are errors.",
            ["tool", "error_class"],
            registry=r,
        )
        self.escalations = Counter(
            "tether_escalations", "Runs handed to a person.", ["kind"], registry=r
        )
        self.approvals_waiting = Gauge(
            "tether_approvals_waiting", "Calls waiting for a person's approval.", registry=r
        )
        self.retries = Counter(
            "tether_model_retries", "Model requests retried.", ["model"], registry=r
        )
        self.fallbacks = Counter(
            "tether_fallbacks", "Answers served by a fallback.", ["kind"], registry=r
        )
        self.limit_hits = Counter(
            "tether_limit_hits", "Runs ended by a limit.", ["limit"], registry=r
        )
        self.compactions = Counter(
            "tether_context_compactions",
            "Context compactions (older turns folded into a summary).",
            ["agent"],
            registry=r,
        )
        self.budget_spent = Gauge(
            "tether_budget_spent_usd", "Spent in a budget window.", ["budget"], registry=r
        )
        self.budget_remaining = Gauge(
            "tether_budget_remaining_usd", "Left in a budget window.", ["budget"], registry=r
        )
        self._breakers = _Breakers()
        r.register(self._breakers)
        self._waiting = 0
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._children: dict[int, dict[tuple[str, ...], Any]] = {}

    def __call__(self, event: Event) -> None:
        """Count ``event`` (never raises)."""
        try:
            self._observe(event)
        except Exception:  # metrics must never break a run
            logger.exception("metrics could not count event %s", event.kind)

    def exposition(self) -> bytes:
        """Return every series in the Prometheus text format."""
        return generate_latest(self.registry)

    def observe_budgets(self, windows: Iterable[WindowUsage]) -> None:
        """Set the budget gauges from ``BudgetBook.usage()`` (the worker calls it)."""
        for window in windows:
            self._child(self.budget_spent, window.budget).set(float(window.spent_usd))
            self._child(self.budget_remaining, window.budget).set(float(window.remaining_usd))

    def watch(self, name: str, breaker: CircuitBreaker) -> None:
        """Report ``breaker``'s state as ``tether_breaker_state{breaker=name}`` at scrape."""
        self._breakers.watched[name] = breaker

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: it is the costly part of counting."""
        children = self._children.get(id(metric))
        if children is None:
            children = self._children[id(metric)] = {}
        child = children.get(values)
        if child is None:
            child = children[values] = metric.labels(*values)
        return child

    def _run(self, event: Event) -> _Run:
        state = self._runs.get(event.run_id)
        if state is None:
            state = self._runs[event.run_id] = _Run(getattr(event, "agent", "unknown"))
            if len(self._runs) > MAX_TRACKED_RUNS:
                self._runs.popitem(last=False)
        return state

    def _observe(self, event: Event) -> None:
        run = self._run(event)
        previous, run.last_at = run.last_at, event.at
        match event:
            case RunStarted(agent=agent):
                run.agent = agent
                self._child(self.runs_started, agent).inc()
            case ModelResponded():
                self._model_responded(run, event, previous)
            case ModelFailed(error_class=error_class):
                self._child(self.model_errors, run.model, error_class).inc()
            case ToolCallStarted(step=step, at=at):
                run.starts[step] = at
            case ToolCallFinished():
                self._tool_finished(run, event)
            case ContextCompacted():
                self._child(self.compactions, run.agent).inc()
            case RunFinished(status=status):
                self._child(self.runs, run.agent, status.value).inc()
                if status is RunStatus.NEEDS_REVIEW:
                    self._child(self.escalations, "needs_review").inc()
                self._runs.pop(event.run_id, None)
            case _:
                self._escalated(event)

    def _model_responded(self, run: _Run, event: ModelResponded, previous: datetime | None) -> None:
        response = event.response
        model = run.model = response.model_name
        if previous is not None:
            self._child(self.model_seconds, model).observe(_seconds(previous, event.at))
        self._child(self.tokens, model, "input").inc(response.usage.input_tokens)
        self._child(self.tokens, model, "output").inc(response.usage.output_tokens)
        if response.cost_usd is None:
            self._child(self.unknown_cost, model).inc()
        else:
            self._child(self.cost, model).inc(float(response.cost_usd))
        if response.degraded:
            self._child(self.fallbacks, "model").inc()
        if response.attempts > 1:
            self._child(self.retries, model).inc(response.attempts - 1)

    def _escalated(self, event: Event) -> None:
        match event:
            case ToolCallInDoubt():
                self._child(self.escalations, "in_doubt").inc()
            case ApprovalRequested():
                self._child(self.escalations, "approval").inc()
                self._waiting += 1
                self.approvals_waiting.set(self._waiting)
            case ApprovalDecided():
                self._waiting = max(0, self._waiting - 1)
                self.approvals_waiting.set(self._waiting)
            case BudgetExhausted():
                self._child(self.escalations, "budget").inc()
            case LimitHit(limit=limit):
                self._child(self.limit_hits, limit).inc()
            case _:
                pass

    def _tool_finished(self, run: _Run, event: ToolCallFinished) -> None:
        started = run.starts.pop(event.step, None)
        if started is not None:
            self._child(self.tool_seconds, event.tool).observe(_seconds(started, event.at))
        if event.is_error:
            self._child(self.tool_errors, event.tool, event.error_class or "error").inc()
        if event.tier is not None:
            self._child(self.fallbacks, "tool").inc()


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class _Breakers(Collector):
    """``tether_breaker_state``, read from the watched breakers at each scrape."""

    def __init__(self) -> None:
        self.watched: dict[str, CircuitBreaker] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tether_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            labels=["breaker"],
        )
        for name, breaker in self.watched.items():
            family.add_metric([name], _BREAKER_STATES.get(_state_name(breaker), -1))
        yield family


def _state_name(breaker: CircuitBreaker) -> str:
    state: Any = breaker.state
    return str(getattr(state, "value", state))


def serve_metrics(metrics: Metrics, port: int, *, addr: str = "127.0.0.1") -> Any:
    """Serve ``metrics`` over HTTP on ``addr:port`` at ``/metrics``, in a daemon thread.

    Returns:
        The HTTP server; call ``shutdown()`` on it to stop serving.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server
