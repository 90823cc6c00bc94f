"""One scripted run with a retry, a fallback, an approval and a limit, seen by every
observer at once: its log lines, spans and metrics agree with its journal."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tether import Agent, RunLimits, RunStatus
from tether.governance.approvals import ApprovalPolicy
from tether.ids import trace_id
from tether.messages import ModelResponse
from tether.observe import EventLog, JsonFormatter, Metrics, SpanRecorder
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio


@tool(risk="external", effect="at_most_once")
def pay(amount: int) -> str:
    """Pay.

    Args:
        amount: Dollars.
    """
    return "paid"


async def test_every_signal_of_one_run() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.all_signals")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Metrics()
    observers = [EventLog(logger), metrics, SpanRecorder(provider)]

    retried = ModelResponse(tool_calls=(call("pay", {"amount": 5}),), attempts=2, degraded=True)
    model = ScriptedModel([retried, call("pay", {"amount": 6}), "never"], name="m")
    agent = Agent(
        name="payer",
        model=model,
        tools=[pay],
        approvals=ApprovalPolicy(),
        limits=RunLimits(max_steps=3, wrap_up=False),
    )
    store = InMemoryStore()
    runtime = Tether(store=store, subscribers=observers)
    waiting = await runtime.run(agent, "pay", user="ana")
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    result = await runtime.resume(waiting.run_id, agent=agent)
    assert result.status is RunStatus.MAX_STEPS
    journal = await store.events(result.run_id)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = [line["event"] for line in lines]
    # The resumed process (here the same one) first re-announces the run's start.
    assert kinds.count("run_started") == 2
    assert [k for k in kinds if k != "run_started"] == [
        e.kind for e in journal if e.kind != "run_started"
    ]
    assert all(line["trace_id"] == trace_id(result.run_id) for line in lines)
    assert {line["user"] for line in lines} == {"ana"}

    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("invoke_agent payer") == 2  # paused for approval, then continued
    assert names.count("chat m") == 2
    paid, stopped = [s for s in spans if s.name == "execute_tool pay"]
    assert paid.attributes["tether.tool.executed"] is True
    assert stopped.attributes["tether.tool.executed"] is False  # stopped by the limit
    assert stopped.attributes["error.type"] == "limit_reached"
    [root] = [
        s
        for s in spans
        if s.name == "invoke_agent payer"
        and s.end_time == max(x.end_time for x in spans if x.name == "invoke_agent payer")
    ]
    assert root.attributes["error.type"] == "max_steps"

    text = metrics.exposition().decode()
    for expected in (
        'tether_model_retries_total{model="m"} 1.0',
        'tether_fallbacks_total{kind="model"} 1.0',
        'tether_escalations_total{kind="approval"} 1.0',
        "tether_approvals_waiting 0.0",
        'tether_limit_hits_total{limit="max_steps"} 1.0',
        'tether_runs_total{agent="payer",status="max_steps"} 1.0',
    ):
        assert expected in text, expected
