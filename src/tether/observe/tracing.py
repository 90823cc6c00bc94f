"""OpenTelemetry spans from run events, following the GenAI semantic conventions.

:class:`SpanRecorder` is an event subscriber. For each run it records, in the run's own
trace (its id derived from the run id, :func:`tether.ids.trace_id`, so every process that
touches the run names the same trace):

- ``invoke_agent {agent}``: from the run's start (or the first event this process saw)
  to its end, or to a pause (approval, review, budget); a run that continues opens a new
  one;
- ``chat {model}``: one per model response or failure, from the run's previous event to
  the response;
- ``execute_tool {tool}``: one per tool call, from its intent to its result (a call that
  never ran, such as a refused one, is a zero-length span with ``tether.tool.executed``
  false).

Times are the events' own timestamps. With only ``opentelemetry-api`` installed (no SDK
configured) the tracer is a no-op and the recorder keeps no state. Prompts, arguments and
results are never put in attributes; error messages are not either (only error classes).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime

from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

from tether.events import (
    ApprovalRequested,
    BudgetExhausted,
    Event,
    ModelFailed,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.ids import root_span_id, trace_id
from tether.observe import genai
from tether.status import RunStatus

__all__ = ["MAX_TRACKED_RUNS", "SpanRecorder"]

logger = logging.getLogger("tether")

MAX_TRACKED_RUNS = 10_000
"""Runs with an open span at once; beyond it the oldest run's spans are ended."""


class _Run:
    """The open spans of one run."""

    __slots__ = ("agent", "last_at", "root", "tools")

    def __init__(self, agent: str | None, root: Span, last_at: datetime) -> None:
        self.agent = agent
        self.root = root
        self.last_at = last_at
        self.tools: dict[int, tuple[Span, ToolCallStarted]] = {}


class SpanRecorder:
    """An event subscriber that records each run as OpenTelemetry spans.

    Args:
        tracer_provider: Where spans go. Default: the global provider (a no-op unless an
            SDK is configured, for example by ``opentelemetry-instrument`` or your code).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer: Tracer = provider.get_tracer("tether")
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._agents: OrderedDict[str, str] = OrderedDict()
        self._live = self.live

    @property
    def live(self) -> bool:
        """Whether spans go anywhere: a real provider is given or set globally."""
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        return not isinstance(provider, _NOOP_PROVIDERS)

    def __call__(self, event: Event) -> None:
        """Record ``event`` (never raises); nothing at all while no provider is set."""
        if isinstance(event, RunStarted):
            self._live = self.live  # a global provider may have been set since
        if not self._live and not self._runs:
            return
        try:
            self._observe(event)
        except Exception:  # traces must never break a run
            logger.exception("could not trace event %s", event.kind)

    def _observe(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._remember_agent(event.run_id, event.agent)
        run = self._runs.get(event.run_id)
        if run is None:
            if isinstance(event, RunFinished):
                return  # nothing open: a run this process never saw running
            run = self._open(event)
            if run is None:
                return
        match event:
            case ModelResponded() | ModelFailed():
                self._chat(run, event)
            case ToolCallStarted(step=step):
                run.tools[step] = (self._start_tool(run, event), event)
            case ToolCallFinished():
                self._finish_tool(run, event)
            case ToolCallInDoubt() | ApprovalRequested() | BudgetExhausted():
                self._close(event.run_id, event.at, paused=True)
                return
            case RunFinished():
                self._finish(run, event)
                return
            case _:
                pass
        run.last_at = event.at

    def _remember_agent(self, run_id: str, agent: str) -> None:
        self._agents[run_id] = agent
        if len(self._agents) > MAX_TRACKED_RUNS:
            self._agents.popitem(last=False)

    def _open(self, event: Event) -> _Run | None:
        agent = self._agents.get(event.run_id)
        name = f"invoke_agent {agent}" if agent else "invoke_agent"
        parent = trace.set_span_in_context(NonRecordingSpan(_root_context(event.run_id)))
        attributes: dict[str, str] = {
            genai.OPERATION_NAME: "invoke_agent",
            genai.CONVERSATION_ID: event.run_id,
        }
        if agent:
            attributes[genai.AGENT_NAME] = agent
        root = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(event.at),
        )
        if not root.is_recording():
            return None  # no SDK: keep nothing
        run = self._runs[event.run_id] = _Run(agent, root, event.at)
        if len(self._runs) > MAX_TRACKED_RUNS:
            oldest, _ = next(iter(self._runs.items()))
            self._close(oldest, event.at, paused=True)
        return run

    def _child(self, run: _Run, name: str, kind: SpanKind, start: datetime) -> Span:
        context = trace.set_span_in_context(run.root)
        return self.tracer.start_span(name, context=context, kind=kind, start_time=_ns(start))

    def _chat(self, run: _Run, event: ModelResponded | ModelFailed) -> None:
        if isinstance(event, ModelResponded):
            response = event.response
            span = self._child(run, f"chat {response.model_name}", SpanKind.CLIENT, run.last_at)
            span.set_attributes(
                {
                    genai.OPERATION_NAME: "chat",
                    genai.REQUEST_MODEL: response.model_name,
                    genai.RESPONSE_MODEL: response.model_name,
                    genai.USAGE_INPUT_TOKENS: response.usage.input_tokens,
                    genai.USAGE_OUTPUT_TOKENS: response.usage.output_tokens,
                    genai.TETHER_STEP: event.step,
                }
            )
            if response.finish_reason:
                span.set_attribute(genai.RESPONSE_FINISH_REASONS, [response.finish_reason])
            if response.cost_usd is not None:
                span.set_attribute(genai.TETHER_COST_USD, str(response.cost_usd))
        else:
            span = self._child(run, "chat", SpanKind.CLIENT, run.last_at)
            span.set_attributes({genai.OPERATION_NAME: "chat", genai.TETHER_STEP: event.step})
            _fail(span, event.error_class)
        span.end(end_time=_ns(event.at))

    def _start_tool(self, run: _Run, event: ToolCallStarted) -> Span:
        span = self._child(run, f"execute_tool {event.tool}", SpanKind.INTERNAL, event.at)
        span.set_attributes(
            {
                genai.OPERATION_NAME: "execute_tool",
                genai.TOOL_NAME: event.tool,
                genai.TOOL_CALL_ID: event.call_id,
                genai.TETHER_STEP: event.step,
            }
        )
        return span

    def _finish_tool(self, run: _Run, event: ToolCallFinished) -> None:
        opened = run.tools.pop(event.step, None)
        if opened is None:  # never started here: refused, a repeat, or started elsewhere
            span = self._child(run, f"execute_tool {event.tool}", SpanKind.INTERNAL, event.at)
            span.set_attributes(
                {
                    genai.OPERATION_NAME: "execute_tool",
                    genai.TOOL_NAME: event.tool,
                    genai.TOOL_CALL_ID: event.call_id,
                    genai.TETHER_STEP: event.step,
                }
            )
        else:
            span = opened[0]
        span.set_attributes(
            {genai.TETHER_EXECUTED: event.executed, genai.TETHER_REPEATED: event.repeated}
        )
        if event.tier is not None:
            span.set_attribute(genai.TETHER_TIER, event.tier)
        if event.is_error:
            _fail(span, event.error_class or "error")
        span.end(end_time=_ns(event.at))

    def _finish(self, run: _Run, event: RunFinished) -> None:
        run.root.set_attribute(genai.TETHER_STATUS, event.status.value)
        if event.status is not RunStatus.COMPLETED:
            _fail(run.root, event.error_class or event.status.value)
        self._close(event.run_id, event.at, paused=False)
        self._agents.pop(event.run_id, None)

    def _close(self, run_id: str, at: datetime, *, paused: bool) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        for span, _ in run.tools.values():
            span.end(end_time=_ns(at))
        if paused:
            run.root.set_attribute(genai.TETHER_PAUSED, True)
        run.root.end(end_time=_ns(at))


_NOOP_PROVIDERS = (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
"""Providers that record nothing: the API's defaults before an SDK is configured."""


def _root_context(run_id: str) -> SpanContext:
    return SpanContext(
        trace_id=int(trace_id(run_id), 16),
        span_id=int(root_span_id(run_id), 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def _fail(span: Span, error_class: str) -> None:
    span.set_attribute(genai.ERROR_TYPE, error_class)
    span.set_status(Status(StatusCode.ERROR, error_class))


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000
