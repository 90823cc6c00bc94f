"""Events for store tests: one of each kind, and journals of a typical run."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    BudgetRaised,
    CheckpointTaken,
    CheckResult,
    ContextCompacted,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    OutputReviewed,
    ResponseRejected,
    ReviewDecided,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.messages import ModelResponse, ToolCall, Usage
from tether.status import RunStatus

AT = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def new_id() -> str:
    return f"run_{uuid.uuid4().hex}"


def started(
    run_id: str | None = None,
    *,
    agent: str = "agent",
    task: str = "task",
    user: str | None = None,
    agent_ref: str | None = "pkg.agents:agent",
) -> RunStarted:
    return RunStarted(
        run_id=run_id or new_id(),
        agent=agent,
        task=task,
        user=user,
        at=AT,
        agent_ref=agent_ref,
    )


def model_failed(run_id: str, step: int = 1) -> ModelFailed:
    return ModelFailed(run_id=run_id, step=step, error_class="x", message="down", at=AT)


def finished(run_id: str, status: RunStatus = RunStatus.COMPLETED) -> RunFinished:
    return RunFinished(
        run_id=run_id, status=status, output="done", error_class=None, error_message=None, at=AT
    )


def in_doubt(run_id: str, step: int = 1) -> ToolCallInDoubt:
    return ToolCallInDoubt(run_id=run_id, step=step, call_id="c1", tool="pay", at=AT)


def decided(run_id: str, step: int = 1) -> ReviewDecided:
    return ReviewDecided(
        run_id=run_id,
        step=step,
        call_id="c1",
        decision="result",
        result="paid",
        reviewer="ana",
        at=AT,
    )


def one_of_each(run_id: str) -> list[Event]:
    """Every event kind after RunStarted, with awkward values (unicode, nesting, offsets)."""
    plus_two = timezone(timedelta(hours=2))
    return [
        ModelResponded(
            run_id=run_id,
            step=1,
            response=ModelResponse(
                text="thinking… «ok» \u2028 \x00",
                tool_calls=(
                    ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}'),
                    ToolCall(id="c2", name="nope", arguments="{"),
                ),
                usage=Usage(input_tokens=3, output_tokens=4),
                cost_usd=Decimal("0.0012"),
                model_name="scripted",
            ),
            at=datetime(2026, 5, 1, 14, 0, 0, 1, tzinfo=plus_two),
        ),
        ModelResponded(
            run_id=run_id,
            step=2,
            response=ModelResponse(text=None, cost_usd=None),
            at=AT,
        ),
        ModelFailed(run_id=run_id, step=3, error_class="rate_limited", message="429", at=AT),
        ResponseRejected(
            run_id=run_id, step=4, reason="duplicate_call_ids", message="ids repeat", at=AT
        ),
        CheckpointTaken(run_id=run_id, step=5, call_id="c1", tool="add", risk="write", at=AT),
        ToolCallStarted(
            run_id=run_id,
            step=5,
            call_id="c1",
            tool="add",
            arguments={"a": 1, "b": [1.5, None, {"ü": "x"}], "big": 2**70},
            idempotency_key=hashlib.sha256(b"k").hexdigest(),
            effect="idempotent",
            at=AT,
        ),
        ToolCallFinished(
            run_id=run_id,
            step=5,
            call_id="c1",
            tool="add",
            content='{"error": "boom"}',
            is_error=True,
            error_class="tool_error",
            executed=True,
            repeated=False,
            at=AT,
        ),
        in_doubt(run_id, step=6),
        decided(run_id, step=6),
        ReviewDecided(
            run_id=run_id,
            step=6,
            call_id="c1",
            decision="skip",
            result=None,
            reviewer=None,
            at=AT,
        ),
        ApprovalRequested(
            run_id=run_id,
            step=7,
            call_id="c2",
            tool="pay",
            approval_id="a1",
            reasons=("tool 'pay' has risk external", "argument 'to' contains \u00e9"),
            expires_at=AT,
            at=AT,
        ),
        ApprovalDecided(
            run_id=run_id,
            step=7,
            call_id="c2",
            approval_id="a1",
            outcome="denied",
            decided_by="ana",
            comment="not this week \U0001f600",
            at=AT,
        ),
        BudgetExhausted(
            run_id=run_id,
            step=8,
            attempt=1,
            budget="user:ana:day",
            message="budget user:ana:day refused $0.01: $0 left of $1",
            at=AT,
        ),
        BudgetRaised(
            run_id=run_id, step=8, attempt=1, budget="user:ana:day", raised_by=None, at=AT
        ),
        OutputReviewed(
            run_id=run_id,
            step=9,
            passed=False,
            results=(
                CheckResult(check="cites", passed=False, problem="cite your sources"),
                CheckResult(check="max_length(10)", passed=True),
            ),
            at=AT,
        ),
        ContextCompacted(
            run_id=run_id,
            step=10,
            folded=6,
            summary="- turn 1: called add {\"a\": 1}; add returned '2'",
            tokens_before=9000,
            tokens_after=3000,
            at=AT,
            usage=Usage(input_tokens=700, output_tokens=90),
            cost_usd=Decimal("0.000123"),
        ),
        LimitHit(run_id=run_id, limit="max_steps", status=RunStatus.MAX_STEPS, at=AT),
        RunFinished(
            run_id=run_id,
            status=RunStatus.MAX_STEPS,
            output=None,
            error_class="max_steps",
            error_message="10 steps",
            at=AT + timedelta(microseconds=999_999),
        ),
    ]


def typical_journal(tool_steps: int, run_id: str | None = None) -> list[Event]:
    """A run that calls ``add`` ``tool_steps`` times, then answers: 3 * steps + 3 events.

    ``typical_journal(4)`` is the 9-step reference run of the benchmarks: 1 run_started,
    5 model_responded, 4 tool_call_started, 4 tool_call_finished, 1 run_finished.
    """
    run_id = run_id or new_id()
    at = AT
    events: list[Event] = [
        RunStarted(run_id=run_id, agent="test", task="Add 1 and 2.", user=None, at=at)
    ]
    for step in range(1, tool_steps + 1):
        call_id = f"call_{step}_0"
        at += timedelta(milliseconds=37, microseconds=step)
        events.append(
            ModelResponded(
                run_id=run_id,
                step=step,
                response=ModelResponse(
                    tool_calls=(ToolCall(id=call_id, name="add", arguments='{"a": 1, "b": 2}'),),
                    usage=Usage(input_tokens=90 + 30 * step, output_tokens=18),
                    model_name="scripted",
                ),
                at=at,
            )
        )
        key = hashlib.sha256(f"{run_id}\x00{step}".encode()).hexdigest()
        events.append(
            ToolCallStarted(
                run_id=run_id,
                step=step,
                call_id=call_id,
                tool="add",
                arguments={"a": 1, "b": 2},
                idempotency_key=key,
                effect="read",
                at=at,
            )
        )
        events.append(
            ToolCallFinished(
                run_id=run_id,
                step=step,
                call_id=call_id,
                tool="add",
                content="3",
                is_error=False,
                error_class=None,
                executed=True,
                repeated=False,
                at=at,
            )
        )
    events.append(
        ModelResponded(
            run_id=run_id,
            step=tool_steps + 1,
            response=ModelResponse(
                text="The sum is 3.",
                usage=Usage(input_tokens=90 + 30 * (tool_steps + 1), output_tokens=6),
                model_name="scripted",
            ),
            at=at,
        )
    )
    events.append(
        RunFinished(
            run_id=run_id,
            status=RunStatus.COMPLETED,
            output="The sum is 3.",
            error_class=None,
            error_message=None,
            at=at,
        )
    )
    return events
