"""The health monitor: sliding windows of outcomes judged by a policy, on a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tether import Agent, RunStatus
from tether.errors import ConfigurationError
from tether.observe.health import AgentHealthMonitor, Health, HealthPolicy
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio


def _monitor(**policy: object) -> tuple[AgentHealthMonitor, FakeClock]:
    clock = FakeClock()
    return AgentHealthMonitor(HealthPolicy(**policy), clock=clock), clock  # type: ignore[arg-type]


def test_a_subject_moves_through_the_states_as_the_window_slides() -> None:
    monitor, clock = _monitor(window=timedelta(minutes=5), min_samples=10)
    for _ in range(9):
        monitor.record("tool", "search", ok=False, latency_s=0.1)
    assert monitor.report("tool", "search").state is Health.HEALTHY  # too few to judge
    monitor.record("tool", "search", ok=True, latency_s=0.1)
    critical = monitor.report("tool", "search")
    assert critical.state is Health.CRITICAL and critical.error_rate == 0.9
    assert critical.reasons == ("error rate 90% ≥ 30%",)

    clock.advance(timedelta(minutes=6))  # the failures leave the window
    for _ in range(17):
        monitor.record("tool", "search", ok=True, latency_s=0.1)
    for _ in range(3):
        monitor.record("tool", "search", ok=False, latency_s=0.1)
    assert monitor.report("tool", "search").state is Health.DEGRADED  # 15 %

    clock.advance(timedelta(minutes=6))
    for _ in range(20):
        monitor.record("tool", "search", ok=True, latency_s=0.1)
    healthy = monitor.report("tool", "search")
    assert healthy.state is Health.HEALTHY and healthy.samples == 20


def test_slow_is_judged_by_the_99th_percentile() -> None:
    monitor, _ = _monitor(slow_p99_s=1.0)
    for latency in [0.1] * 98 + [0.2, 3.0]:
        monitor.record("model", "m", ok=True, latency_s=latency)
    report = monitor.report("model", "m")
    assert (report.state, report.p50_s, report.p99_s) == (Health.HEALTHY, 0.1, 0.2)  # 1 % slow
    monitor.record("model", "m", ok=True, latency_s=5.0)
    slow = monitor.report("model", "m")
    assert (slow.state, slow.p99_s) == (Health.SLOW, 3.0)
    assert slow.reasons == ("p99 latency 3 s > 1 s",)


@pytest.mark.parametrize(
    "policy",
    [
        {"window": timedelta(0)},
        {"min_samples": 0},
        {"degraded_error_rate": 0.5, "critical_error_rate": 0.4},
        {"critical_error_rate": 1.5},
        {"slow_p99_s": 0},
    ],
)
def test_bad_policies_are_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        HealthPolicy(**policy)  # type: ignore[arg-type]


@tool(risk="read")
def flaky(n: int) -> str:
    """Fail on odd numbers.

    Args:
        n: A number.
    """
    if n % 2:
        raise ValueError("odd")
    return "even"


async def test_events_feed_the_monitor_and_a_critical_agent_is_refused() -> None:
    clock = FakeClock()
    monitor = AgentHealthMonitor(
        HealthPolicy(min_samples=2, refuse_when_critical=True), clock=clock
    )
    store = InMemoryStore(clock=clock)
    runtime = Tether(store=store, clock=clock, health=monitor)
    broken = Agent(name="broken", model=ScriptedModel([], name="m"))
    for _ in range(2):
        assert (await runtime.run(broken, "go")).status is RunStatus.FAILED
    assert monitor.report("agent", "broken").state is Health.CRITICAL
    assert not monitor.admits("broken")

    refused = await runtime.run(broken, "go")
    assert refused.status is RunStatus.BLOCKED
    assert refused.error is not None and refused.error.error_class == "agent_unhealthy"
    assert "critical" in refused.error.message

    model = ScriptedModel([[call("flaky", {"n": 1}), call("flaky", {"n": 2})], "done"], name="m")
    ok = await runtime.run(Agent(name="fine", model=model, tools=[flaky]), "go")
    assert ok.status is RunStatus.COMPLETED
    tool_report = monitor.report("tool", "flaky")
    assert tool_report.samples == 2 and tool_report.error_rate == 0.5
    assert monitor.report("agent", "fine").state is Health.HEALTHY
    assert monitor.report("model", "m").samples == 2
    assert monitor.admits("fine")


def test_a_policy_that_does_not_refuse_always_admits() -> None:
    monitor, _ = _monitor(min_samples=1)
    monitor.record("agent", "a", ok=False, latency_s=1)
    assert monitor.report("agent", "a").state is Health.CRITICAL
    assert monitor.admits("a")
