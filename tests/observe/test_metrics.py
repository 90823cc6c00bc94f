"""Prometheus metrics derived from run events, and `tether worker --metrics-port`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tether import Agent, RunLimits, RunStatus, ToolError
from tether.governance.approvals import ApprovalPolicy
from tether.messages import ModelResponse, Usage
from tether.observe.metrics import MAX_TRACKED_RUNS, Metrics
from tether.resilience import CircuitBreaker
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import FakeClock, ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@tool(risk="read")
def lookup(name: str) -> str:
    """Look up a name.

    Args:
        name: The name.
    """
    if name == "bad":
        raise ToolError("no such name")
    return f"{name} found"


@tool(risk="external", effect="at_most_once")
def pay(amount: int) -> str:
    """Pay.

    Args:
        amount: Dollars.
    """
    return "paid"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_run_is_counted_by_status_tokens_cost_errors_and_fallbacks() -> None:
    paid = ModelResponse(
        tool_calls=(call("lookup", {"name": "bad"}, id="a"), call("lookup", {"name": "x"}, id="b")),
        usage=Usage(input_tokens=100, output_tokens=20),
        cost_usd=Decimal("0.5"),
        degraded=True,
        attempts=3,
    )
    model = ScriptedModel([paid, call("lookup", {"name": "x"}), "done"], name="m")
    metrics = Metrics()
    result = await Tether(store=InMemoryStore(), subscribers=[metrics]).run(
        Agent(name="a", model=model, tools=[lookup]), "go"
    )
    assert result.status is RunStatus.COMPLETED
    assert value(metrics, "tether_runs_started_total", agent="a") == 1
    assert value(metrics, "tether_runs_total", agent="a", status="completed") == 1
    assert value(metrics, "tether_tokens_total", model="m", direction="input") == 100
    assert value(metrics, "tether_tokens_total", model="m", direction="output") == 20
    assert value(metrics, "tether_cost_usd_total", model="m") == 0.5
    assert value(metrics, "tether_tool_errors_total", tool="lookup", error_class="tool_error") == 1
    assert value(metrics, "tether_fallbacks_total", kind="model") == 1
    assert value(metrics, "tether_model_retries_total", model="m") == 2
    assert (
        value(metrics, "tether_tool_call_seconds_count", tool="lookup") == 2
    )  # the repeat never ran
    assert value(metrics, "tether_model_call_seconds_count", model="m") == 3
    assert metrics._runs == {}, "a finished run leaves no state behind"


async def test_limits_failures_and_approvals_are_counted() -> None:
    metrics = Metrics()
    runtime = Tether(store=InMemoryStore(), subscribers=[metrics])
    capped = Agent(
        name="capped",
        model=ScriptedModel([call("lookup", {"name": "x"})] * 3, name="m"),
        tools=[lookup],
        limits=RunLimits(max_steps=1, wrap_up=False),
    )
    assert (await runtime.run(capped, "go")).status is RunStatus.MAX_STEPS
    assert value(metrics, "tether_limit_hits_total", limit="max_steps") == 1

    broken = Agent(name="broken", model=ScriptedModel([], name="m"))
    assert (await runtime.run(broken, "go")).status is RunStatus.FAILED
    assert (
        value(metrics, "tether_model_errors_total", model="unknown", error_class="script_exhausted")
        == 1
    )

    asking = Agent(
        name="payer",
        model=ScriptedModel([call("pay", {"amount": 1}), "ok"], name="m"),
        tools=[pay],
        approvals=ApprovalPolicy(),
    )
    waiting = await runtime.run(asking, "pay")
    assert value(metrics, "tether_approvals_waiting") == 1
    assert value(metrics, "tether_escalations_total", kind="approval") == 1
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    assert value(metrics, "tether_approvals_waiting") == 0
    await runtime.resume(waiting.run_id, agent=asking)
    assert value(metrics, "tether_runs_total", agent="payer", status="completed") == 1


def test_breakers_and_budgets_are_reported_and_state_is_bounded() -> None:
    from datetime import UTC, datetime

    from tether.events import RunStarted
    from tether.governance.budgets import WindowUsage

    metrics = Metrics()
    breaker = CircuitBreaker("search", clock=FakeClock())
    metrics.watch("search", breaker)
    assert value(metrics, "tether_breaker_state", breaker="search") == 0
    at = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.observe_budgets(
        [
            WindowUsage(
                budget="user:ana:day",
                window_start=at,
                limit_usd=Decimal(1),
                spent_usd=Decimal("0.25"),
                reserved_usd=Decimal("0.5"),
            )
        ]
    )
    assert value(metrics, "tether_budget_spent_usd", budget="user:ana:day") == 0.25
    assert value(metrics, "tether_budget_remaining_usd", budget="user:ana:day") == 0.25
    for i in range(MAX_TRACKED_RUNS + 50):
        metrics(RunStarted(run_id=f"r{i}", agent="a", task="t", user=None, at=at))
    assert len(metrics._runs) == MAX_TRACKED_RUNS


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    assert first.registry is not second.registry


AGENT = """
from tether import Agent, tool
from tether.testing import FunctionModel


def respond(messages, tools):
    return "done"


agent = Agent(name="quick", model=FunctionModel(respond, name="m"))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_worker_serves_metrics(tmp_path: Path) -> None:
    (tmp_path / "quick.py").write_text(AGENT)
    env = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    env["TETHER_STORE"] = f"sqlite:///{tmp_path / 't.db'}"
    submitted = subprocess.run(
        [sys.executable, "-m", "tether", "submit", "quick.py:agent", "go"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr

    async def spend() -> None:
        from tether.governance.budgets import AppliedBudget, Budget, budget_book
        from tether.store import SqliteStore

        store = SqliteStore(tmp_path / "t.db")
        daily = Budget.global_(Decimal("2"))
        applied = AppliedBudget(key=daily.key(run_id="r", user=None, agent="a"), budget=daily)
        ticket = await budget_book(store).reserve("r", 1, Decimal("0.5"), [applied])
        await budget_book(store).settle(ticket, Decimal("0.5"))  # type: ignore[arg-type]
        await store.close()

    import asyncio

    asyncio.run(spend())
    port = _free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether",
            "worker",
            "--metrics-port",
            str(port),
            "--poll",
            "0.1",
            "--log-json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
                    body = page.read().decode()
            except OSError:
                body = ""
            if 'tether_runs_total{agent="quick",status="completed"} 1.0' in body:
                break
            time.sleep(0.1)
        assert 'tether_runs_total{agent="quick",status="completed"} 1.0' in body, body[-2000:]
        assert 'tether_budget_spent_usd{budget="global"} 0.5' in body, body[-2000:]
        assert 'tether_budget_remaining_usd{budget="global"} 1.5' in body
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert {"run_started", "run_finished"} <= {line.get("event") for line in lines}
