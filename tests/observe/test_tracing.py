"""OpenTelemetry spans recorded from run events (GenAI semantic conventions)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from tether import Agent, RunStatus, ToolError
from tether.governance.approvals import ApprovalPolicy
from tether.ids import trace_id
from tether.messages import ModelResponse, Usage
from tether.observe.tracing import SpanRecorder
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio


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


def _recorder() -> tuple[SpanRecorder, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return SpanRecorder(provider), exporter


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_run_is_an_agent_span_with_chat_and_tool_children() -> None:
    recorder, exporter = _recorder()
    first = ModelResponse(
        tool_calls=(call("lookup", {"name": "x"}, id="a"), call("lookup", {"name": "bad"}, id="b")),
        usage=Usage(input_tokens=30, output_tokens=7),
        finish_reason="tool_calls",
    )
    model = ScriptedModel([first, "done"], name="m")
    result = await Tether(store=InMemoryStore(), subscribers=[recorder]).run(
        Agent(name="helper", model=model, tools=[lookup]), "go"
    )
    assert result.status is RunStatus.COMPLETED
    spans = _by_name(exporter.get_finished_spans())
    [agent] = spans["invoke_agent helper"]
    chats = spans["chat m"]
    tools = spans["execute_tool lookup"]
    assert len(chats) == 2 and len(tools) == 2
    run_trace = int(trace_id(result.run_id), 16)
    for span in (agent, *chats, *tools):
        assert span.context.trace_id == run_trace
    for child in (*chats, *tools):
        assert child.parent is not None and child.parent.span_id == agent.context.span_id
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.conversation.id"] == result.run_id
    assert agent.attributes["tether.run.status"] == "completed"
    assert agent.status.status_code is StatusCode.UNSET
    assert chats[0].kind is SpanKind.CLIENT
    assert chats[0].attributes["gen_ai.usage.input_tokens"] == 30
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    failed = next(s for s in tools if s.status.status_code is StatusCode.ERROR)
    assert failed.attributes["error.type"] == "tool_error"
    assert failed.attributes["gen_ai.tool.call.id"] == "b"
    for span in (*chats, *tools):
        assert agent.start_time <= span.start_time <= span.end_time <= agent.end_time
    assert recorder._runs == {}


async def test_failures_and_refusals_are_marked() -> None:
    recorder, exporter = _recorder()
    model = ScriptedModel([call("nope"), ModelResponse(text="")], name="m")
    agent = Agent(name="a", model=model, tools=[lookup])
    runtime = Tether(store=InMemoryStore(), subscribers=[recorder])
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    spans = _by_name(exporter.get_finished_spans())
    [refused] = spans["execute_tool nope"]
    assert refused.attributes["tether.tool.executed"] is False
    assert refused.start_time == refused.end_time
    [root] = spans["invoke_agent a"]
    assert root.status.status_code is StatusCode.ERROR
    assert result.error is not None
    assert root.attributes["error.type"] == result.error.error_class

    failing = Agent(name="f", model=ScriptedModel([], name="m"))
    await runtime.run(failing, "go")
    failed_chats = _by_name(exporter.get_finished_spans())["chat"]
    assert len(failed_chats) == 2  # one per run: the first ran out after its retry
    assert {s.attributes["error.type"] for s in failed_chats} == {"script_exhausted"}
    assert all(s.status.status_code is StatusCode.ERROR for s in failed_chats)


async def test_a_pause_ends_the_agent_span_and_the_continuation_opens_another() -> None:
    recorder, exporter = _recorder()
    agent = Agent(
        name="payer",
        model=ScriptedModel([call("pay", {"amount": 1}), "ok"], name="m"),
        tools=[pay],
        approvals=ApprovalPolicy(),
    )
    runtime = Tether(store=InMemoryStore(), subscribers=[recorder])
    waiting = await runtime.run(agent, "pay")
    [paused] = _by_name(exporter.get_finished_spans())["invoke_agent payer"]
    assert paused.attributes["tether.run.paused"] is True
    [request] = await runtime.pending_approvals()
    await runtime.approve(request.approval_id, approver="bob")
    await runtime.resume(waiting.run_id, agent=agent)
    agents = _by_name(exporter.get_finished_spans())["invoke_agent payer"]
    assert len(agents) == 2
    assert {s.context.trace_id for s in agents} == {int(trace_id(waiting.run_id), 16)}
    [paid] = _by_name(exporter.get_finished_spans())["execute_tool pay"]
    assert paid.parent is not None and paid.parent.span_id == agents[1].context.span_id


async def test_without_an_sdk_nothing_is_kept() -> None:
    recorder = SpanRecorder(NoOpTracerProvider())
    model = ScriptedModel([call("lookup", {"name": "x"}), "done"], name="m")
    await Tether(store=InMemoryStore(), subscribers=[recorder]).run(
        Agent(name="a", model=model, tools=[lookup]), "go"
    )
    assert recorder._runs == {}


async def test_spans_carry_no_secrets() -> None:
    from tether.errors import ModelError

    secret = "sk-ant-api03-SECRETSECRETSECRET"

    @tool(risk="read")
    def leak(name: str) -> str:
        """Return a secret.

        Args:
            name: Anything.
        """
        raise ToolError(f"denied for key {secret}")

    recorder, exporter = _recorder()
    model = ScriptedModel([call("leak", {"name": secret}), ModelError(f"bad key {secret}")])
    await Tether(store=InMemoryStore(), subscribers=[recorder]).run(
        Agent(name="a", model=model, tools=[leak]), f"use {secret}"
    )
    spans = exporter.get_finished_spans()
    assert len(spans) >= 3
    for span in spans:
        assert secret not in span.name
        assert all(secret not in str(value) for value in (span.attributes or {}).values())
        assert secret not in (span.status.description or "")
