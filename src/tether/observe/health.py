"""Health of agents, tools and models over a sliding window: healthy, degraded, critical, slow.

:class:`AgentHealthMonitor` is an event subscriber. It keeps, per agent, tool and model,
the outcomes and latencies of the last :attr:`HealthPolicy.window` (on an injected clock)
and judges them with a :class:`HealthPolicy`, a pure value:

- ``critical`` when the error rate reaches ``critical_error_rate``;
- ``degraded`` when it reaches ``degraded_error_rate``;
- ``slow`` when the 99th percentile latency passes ``slow_p99_s``;
- ``healthy`` otherwise, and while fewer than ``min_samples`` outcomes are known.

With ``refuse_when_critical``, :meth:`AgentHealthMonitor.admits` is false for a critical
agent, and ``Tether(health=monitor)`` ends its new runs ``blocked`` (error class
``agent_unhealthy``) at once instead of spending money on them.

Outcomes: a run is good when it ends ``completed`` (its latency is its duration, when this
process saw it start); a tool call when its result is not an error (latency from its
intent); a model call when it answered (latency from the run's previous event).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from tether.clock import Clock
from tether.errors import ConfigurationError
from tether.events import (
    Event,
    ModelFailed,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from tether.status import RunStatus

__all__ = ["AgentHealthMonitor", "Health", "HealthPolicy", "HealthReport", "Subject"]

Subject = Literal["agent", "tool", "model"]
"""What a health window is about."""

MAX_OPEN = 10_000
"""Runs and calls whose start the monitor remembers at once (oldest forgotten first)."""


class Health(StrEnum):
    """A judgement of one agent, tool or model."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    SLOW = "slow"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthPolicy:
    """Thresholds that turn a window of outcomes into a :class:`Health`.

    Raises:
        ConfigurationError: A window that is not positive, rates outside ``(0, 1]`` or a
            degraded rate above the critical one, or counts below 1.
    """

    window: timedelta = timedelta(minutes=5)
    """How far back outcomes count. Default 5 minutes."""
    max_samples: int = 1000
    """Outcomes kept per subject (the newest). Default 1,000."""
    min_samples: int = 10
    """Below this many outcomes a subject is ``healthy`` (too little to judge). Default 10."""
    degraded_error_rate: float = 0.1
    """Error rate from which a subject is ``degraded``. Default 0.1."""
    critical_error_rate: float = 0.3
    """Error rate from which a subject is ``critical``. Default 0.3."""
    slow_p99_s: float | None = None
    """99th percentile latency in seconds above which a subject is ``slow``. Default:
    latency is not judged."""
    refuse_when_critical: bool = False
    """Refuse new runs of a critical agent (:meth:`AgentHealthMonitor.admits`). Default
    ``False``."""

    def __post_init__(self) -> None:
        if not self.window.total_seconds() > 0:
            raise ConfigurationError(f"window must be positive, not {self.window}")
        if self.max_samples < 1 or self.min_samples < 1:
            raise ConfigurationError("max_samples and min_samples must be at least 1")
        rates = (self.degraded_error_rate, self.critical_error_rate)
        if not all(0 < rate <= 1 for rate in rates) or rates[0] > rates[1]:
            raise ConfigurationError(
                "error rates must be in (0, 1], the degraded one at most the critical one"
            )
        if self.slow_p99_s is not None and not self.slow_p99_s > 0:
            raise ConfigurationError(f"slow_p99_s must be positive, not {self.slow_p99_s}")

    def judge(self, outcomes: list[tuple[bool, float]]) -> HealthReport:
        """Judge ``(ok, latency_s)`` outcomes (already within the window)."""
        samples = len(outcomes)
        if samples == 0:
            return HealthReport(state=Health.HEALTHY, samples=0)
        errors = sum(1 for ok, _ in outcomes if not ok)
        rate = errors / samples
        latencies = sorted(latency for _, latency in outcomes)
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        reasons: list[str] = []
        state = Health.HEALTHY
        if samples >= self.min_samples:
            if rate >= self.critical_error_rate:
                state = Health.CRITICAL
                reasons.append(f"error rate {rate:.0%} ≥ {self.critical_error_rate:.0%}")
            elif rate >= self.degraded_error_rate:
                state = Health.DEGRADED
                reasons.append(f"error rate {rate:.0%} ≥ {self.degraded_error_rate:.0%}")
            elif self.slow_p99_s is not None and p99 > self.slow_p99_s:
                state = Health.SLOW
                reasons.append(f"p99 latency {p99:.3g} s > {self.slow_p99_s:g} s")
        return HealthReport(
            state=state,
            samples=samples,
            error_rate=rate,
            p50_s=p50,
            p99_s=p99,
            reasons=tuple(reasons),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The health of one subject now."""

    state: Health
    samples: int
    """Outcomes in the window."""
    error_rate: float = 0.0
    p50_s: float = 0.0
    """Median latency, in seconds."""
    p99_s: float = 0.0
    """99th percentile latency, in seconds."""
    reasons: tuple[str, ...] = ()


class AgentHealthMonitor:
    """Sliding windows of outcomes per agent, tool and model; an event subscriber.

    Args:
        policy: The thresholds. Default :class:`HealthPolicy()`.
        clock: The clock the window slides on (a ``FakeClock`` in tests).
    """

    def __init__(self, policy: HealthPolicy | None = None, *, clock: Clock) -> None:
        self.policy = policy if policy is not None else HealthPolicy()
        self.clock = clock
        self._windows: dict[tuple[Subject, str], deque[tuple[datetime, bool, float]]] = {}
        self._started: dict[str, tuple[str, datetime]] = {}
        self._last: dict[str, datetime] = {}
        self._calls: dict[tuple[str, int], datetime] = {}

    def record(self, subject: Subject, name: str, *, ok: bool, latency_s: float) -> None:
        """Add one outcome of ``name`` (an agent, tool or model), now."""
        window = self._windows.get((subject, name))
        if window is None:
            window = self._windows[(subject, name)] = deque(maxlen=self.policy.max_samples)
        window.append((self.clock.now(), ok, max(0.0, latency_s)))

    def report(self, subject: Subject, name: str) -> HealthReport:
        """Judge ``name`` on the outcomes of the last window."""
        window = self._windows.get((subject, name))
        if window is None:
            return HealthReport(state=Health.HEALTHY, samples=0)
        oldest = self.clock.now() - self.policy.window
        while window and window[0][0] < oldest:
            window.popleft()
        return self.policy.judge([(ok, latency) for _, ok, latency in window])

    def reports(self) -> dict[tuple[Subject, str], HealthReport]:
        """Every subject's report, by ``(subject, name)``."""
        return {key: self.report(*key) for key in list(self._windows)}

    def admits(self, agent: str) -> bool:
        """Whether a new run of ``agent`` may start.

        False only for a critical agent, and only while the policy refuses them.
        """
        if not self.policy.refuse_when_critical:
            return True
        return self.report("agent", agent).state is not Health.CRITICAL

    def __call__(self, event: Event) -> None:
        """Record the outcome an event carries, if any."""
        previous = self._last.get(event.run_id)
        self._last[event.run_id] = event.at
        match event:
            case RunStarted(agent=agent, at=at):
                self._started[event.run_id] = (agent, at)
            case ModelResponded(response=response):
                since = previous or event.at
                latency = (event.at - since).total_seconds()
                self.record("model", response.model_name, ok=True, latency_s=latency)
            case ModelFailed():
                since = previous or event.at
                self.record(
                    "model", "unknown", ok=False, latency_s=(event.at - since).total_seconds()
                )
            case ToolCallStarted(step=step, at=at):
                self._calls[(event.run_id, step)] = at
            case ToolCallFinished(step=step, tool=tool, is_error=is_error):
                started = self._calls.pop((event.run_id, step), event.at)
                latency = (event.at - started).total_seconds()
                self.record("tool", tool, ok=not is_error, latency_s=latency)
            case RunFinished(status=status):
                self._finished(event.run_id, status, event.at)
            case _:
                pass
        self._bound()

    def _finished(self, run_id: str, status: RunStatus, at: datetime) -> None:
        self._last.pop(run_id, None)
        started = self._started.pop(run_id, None)
        if started is None:
            return  # never seen starting: its agent is unknown here
        agent, since = started
        ok = status is RunStatus.COMPLETED
        self.record("agent", agent, ok=ok, latency_s=(at - since).total_seconds())

    def _bound(self) -> None:
        for table in (self._started, self._last, self._calls):
            _trim(table)


def _trim(table: dict[Any, Any]) -> None:
    """Forget the oldest entries of ``table`` beyond :data:`MAX_OPEN`."""
    while len(table) > MAX_OPEN:
        del table[next(iter(table))]


def _percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]
