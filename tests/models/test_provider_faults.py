"""Provider faults at scale: real HTTP, the real openai SDK, tether's retries, breaker, fallback.

Workload (see the reliability specification, provider fault injection):

1. 200 runs against a primary OpenAI-compatible server (streaming) that injects a fault
   into 20 % of its answers, drawn from every fault the loopback server knows, with a
   clean fallback server behind it;
2. a full outage of the primary: its breaker must open and then keep every request away
   from it, while the fallback serves every run (``degraded``);
3. the primary comes back: after the breaker's reset timeout a probe closes it again.

Each run asks for one ``transfer`` call with fixed arguments, then answers. The tool
records every execution, so a call assembled from a cut stream would show up as a second
execution or wrong arguments.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import pytest

from tests.models.fault_server import (
    ConnectTimeout,
    ContextLength,
    DuplicateChunks,
    ErrorBody200,
    FaultPlan,
    FaultServer,
    MalformedChunk,
    QuotaExhausted,
    RateLimited,
    RequestRecord,
    ServerError,
    StallAfterHeaders,
    StreamCut,
    Unauthorized,
    http_date_in,
    tool_then_answer,
)
from tether import Agent, RunLimits, RunResult, RunStatus, Tether, tool
from tether.models import FREE, FallbackModel, OpenAIModel, ResilientModel, close_model
from tether.resilience import BreakerState, BreakerStateChanged, CircuitBreaker, RetryPolicy
from tether.store import InMemoryStore

pytestmark = pytest.mark.anyio

RUNS = 200
OUTAGE_RUNS = 40
CONCURRENCY = 20
RETRY_AFTER_S = 1
CLIENT_TIMEOUT_S = 2.0
ARGUMENTS = {"amount": 42, "to": "acct_7"}
RETRYABLE = {
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connection_error",
    "stream_truncated",
    "invalid_response",
}
FAULTS = [
    RateLimited(retry_after_seconds=RETRY_AFTER_S),
    RateLimited(retry_after_seconds=None, retry_after_http_date=http_date_in(1)),
    QuotaExhausted(),
    ServerError(500),
    ServerError(502),
    ServerError(503),
    ServerError(529),
    ConnectTimeout(stall_seconds=2 * CLIENT_TIMEOUT_S),
    StallAfterHeaders(),
    StreamCut(at="no_finish_reason"),
    StreamCut(at="mid_tool_arguments"),
    StreamCut(at="mid_tool_arguments", abrupt=False),
    MalformedChunk(),
    DuplicateChunks(),
    ErrorBody200(),
    Unauthorized(),
    ContextLength(),
]


@dataclass
class Observed:
    executions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    retries: list[tuple[int, str, float]] = field(default_factory=list)
    breaker: list[tuple[float, BreakerState]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    """When the primary's HTTP client sent each request (time.monotonic)."""


def build(primary: FaultServer, fallback: FaultServer, seen: Observed) -> Agent[str]:
    @tool(risk="write", effect="idempotent")
    def transfer(amount: int, to: str, run: str) -> str:
        """Move money.

        Args:
            amount: Cents.
            to: The account.
            run: The run's label.
        """
        seen.executions.append((run, {"amount": amount, "to": to}))
        return "ok"

    breaker = CircuitBreaker(
        "primary",
        clock=(clock := _clock()),
        window=20,
        minimum_calls=10,
        failure_rate=0.5,
        consecutive_failures=None,
        reset_timeout=1.0,
        on_state_change=lambda change: _note(seen, change),
    )
    retry = RetryPolicy(max_attempts=5, initial_delay=0.02, max_delay=0.2, deadline=20.0)

    def on_retry(attempt: Any) -> None:
        seen.retries.append((attempt.attempt, attempt.error_class, attempt.delay))

    async def sent(request: httpx2.Request) -> None:
        seen.sent.append(time.monotonic())

    client = openai.AsyncOpenAI(
        base_url=primary.base_url,
        api_key="x",
        timeout=CLIENT_TIMEOUT_S,
        max_retries=0,
        http_client=httpx2.AsyncClient(event_hooks={"request": [sent]}),
    )
    main = ResilientModel(
        OpenAIModel("primary-model", stream=True, price=FREE, client=client),
        retry=retry,
        breaker=breaker,
        clock=clock,
        on_retry=on_retry,
    )
    spare = ResilientModel(
        OpenAIModel(
            "fallback-model", base_url=fallback.base_url, api_key="x", timeout=5.0, price=FREE
        ),
        retry=retry,
        clock=clock,
    )
    return Agent(
        name="payer",
        model=FallbackModel([main, spare]),
        tools=[transfer],
        limits=RunLimits(max_steps=6),
    )


def _clock() -> Any:
    from tether.clock import SystemClock

    return SystemClock()


def _note(seen: Observed, change: BreakerStateChanged) -> None:
    seen.breaker.append((time.monotonic(), change.state))


def task_of(body: dict[str, Any]) -> str:
    return next(str(m["content"]) for m in body["messages"] if m["role"] == "user")


def script_for_runs() -> Any:
    """Call transfer with the run's label (its task), then answer."""

    def script(request: dict[str, Any], index: int) -> Any:
        task = task_of(request)
        return tool_then_answer("transfer", {**ARGUMENTS, "run": task}, f"paid {task}")(
            request, index
        )

    return script


async def drive(agent: Agent[str], labels: list[str]) -> list[RunResult[str]]:
    runtime = Tether(store=InMemoryStore())
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(label: str) -> RunResult[str]:
        async with gate:
            return await runtime.run(agent, label)

    return await asyncio.gather(*(one(label) for label in labels))


def conversation(record: RequestRecord) -> tuple[str, int]:
    assert record.body is not None
    return task_of(record.body), len(record.body["messages"])


async def test_faults_outage_and_recovery() -> None:
    with FaultServer() as primary, FaultServer() as fallback:
        primary.script = FaultPlan(script_for_runs(), seed=7, rate=0.2, faults=FAULTS)
        fallback.script = script_for_runs()
        seen = Observed()
        agent = build(primary, fallback, seen)
        try:
            await scenario(agent, primary, fallback, seen)
        finally:
            await close_model(agent.model)  # type: ignore[arg-type]


async def scenario(
    agent: Agent[str], primary: FaultServer, fallback: FaultServer, seen: Observed
) -> None:
    if True:
        # 1. 20 % faults.
        labels = [f"run-{i}" for i in range(RUNS)]
        results = await drive(agent, labels)
        plan = primary.script
        assert isinstance(plan, FaultPlan)
        injected = Counter(
            type(plan.fault_for(r.index)).__name__
            for r in primary.requests
            if plan.fault_for(r.index) is not None
        )
        # Around 20 % of the primary's requests fail (fewer requests reach it while its
        # breaker is open, if bursts of faults open it).
        assert len(primary.requests) >= RUNS / 2 and sum(injected.values()) >= 30, injected
        assert len(injected) >= 8, f"most kinds of fault were served: {injected}"
        check_runs(results, labels, seen, allow_failed=0.01)
        check_retries(seen)
        check_retry_after(primary.requests)
        check_no_request_while_open(seen)

        # 2. The primary is down: its breaker opens and the fallback serves every run.
        primary.outage = True
        before = len(primary.requests)
        opened_before = sum(1 for _, state in seen.breaker if state is BreakerState.OPEN)
        outage_labels = [f"outage-{i}" for i in range(OUTAGE_RUNS)]
        outage = await drive(agent, outage_labels)
        check_runs(outage, outage_labels, seen, allow_failed=0.0)
        assert all(r.degraded for r in outage), "the fallback served every run"
        assert sum(1 for _, s in seen.breaker if s is BreakerState.OPEN) > opened_before
        during = len(primary.requests) - before
        assert during <= 5 * CONCURRENCY, f"{during} requests reached the primary during the outage"
        check_no_request_while_open(seen)

        # 3. It is back: after the reset timeout a probe closes the breaker.
        primary.outage = False
        primary.script = script_for_runs()
        await asyncio.sleep(1.1)
        back = await drive(agent, ["back-0"])
        assert back[0].status is RunStatus.COMPLETED and not back[0].degraded
        assert seen.breaker[-1][1] is BreakerState.CLOSED
        check_no_request_while_open(seen)
        print(f"faults served: {dict(injected)}; retries: {len(seen.retries)}")


def check_runs(
    results: list[RunResult[str]], labels: list[str], seen: Observed, *, allow_failed: float
) -> None:
    completed = [r for r in results if r.status is RunStatus.COMPLETED]
    assert len(completed) >= (1 - allow_failed) * len(results), Counter(
        (r.status.value, r.error.error_class if r.error else None) for r in results
    )
    for result in results:
        if result.status is not RunStatus.COMPLETED:
            assert result.error is not None and result.error.error_class, "a typed error"
    runs = Counter(run for run, _ in seen.executions)
    for label in labels:
        assert runs[label] <= 1, f"{label}: the tool ran {runs[label]} times"
    for run, arguments in seen.executions:
        assert arguments == ARGUMENTS, f"{run}: the tool ran with {arguments}"
    for result, label in zip(results, labels, strict=True):
        if result.status is RunStatus.COMPLETED:
            assert runs[label] == 1 and result.output == f"paid {label}"


def check_retries(seen: Observed) -> None:
    assert seen.retries, "faults were retried"
    assert {error_class for _, error_class, _ in seen.retries} <= RETRYABLE
    assert max(attempt for attempt, _, _ in seen.retries) <= 4, "at most 5 attempts"
    first = [
        delay for attempt, cls, delay in seen.retries if attempt == 1 and cls != "rate_limited"
    ]
    assert len(first) >= 10
    spread = statistics.pstdev(first) / statistics.mean(first)
    assert spread > 0.3, f"first retries are jittered (coefficient of variation {spread:.2f})"


def check_retry_after(requests: list[RequestRecord]) -> None:
    by_conversation: dict[tuple[str, int], list[RequestRecord]] = {}
    for record in requests:
        if record.body is not None:
            by_conversation.setdefault(conversation(record), []).append(record)
    waited = 0
    for records in by_conversation.values():
        for earlier, later in itertools.pairwise(records):
            served = earlier.served
            if isinstance(served, RateLimited) and served.retry_after_seconds is not None:
                assert earlier.responded is not None
                gap = later.arrived - earlier.responded
                assert gap >= served.retry_after_seconds - 0.01, f"waited only {gap:.3f} s"
                waited += 1
    assert waited >= 1, "a Retry-After in seconds was served and honoured"


def check_no_request_while_open(seen: Observed) -> None:
    """No request left the primary's client while its breaker was open.

    Requests admitted just before it opened may still arrive at the server afterwards;
    what must never happen is a request *sent* inside an open window.
    """
    windows: list[tuple[float, float]] = []
    opened: float | None = None
    for moment, state in seen.breaker:
        if state is BreakerState.OPEN:
            opened = moment
        elif opened is not None:
            windows.append((opened, moment))
            opened = None
    if opened is not None:
        windows.append((opened, float("inf")))
    for start, end in windows:
        inside = [t for t in seen.sent if start < t < end]
        assert not inside, f"{len(inside)} requests went to the primary while its breaker was open"
