"""Typed events of a run, named in the past tense.

Events go to subscribers as they happen and are appended to the run's journal in the
:class:`~tether.store.Store`. They are plain frozen dataclasses; :func:`event_to_json`
and :func:`event_from_json` round-trip them exactly (``kind`` discriminates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import TypeAdapter

from tether.messages import ModelResponse, Usage
from tether.status import RunStatus

__all__ = [
    "ApprovalDecided",
    "ApprovalRequested",
    "BudgetExhausted",
    "BudgetRaised",
    "CheckResult",
    "CheckpointTaken",
    "ContextCompacted",
    "Event",
    "LimitHit",
    "ModelFailed",
    "ModelResponded",
    "OutputReviewed",
    "ResponseRejected",
    "ReviewDecided",
    "RunFinished",
    "RunStarted",
    "ToolCallFinished",
    "ToolCallInDoubt",
    "ToolCallStarted",
    "event_from_json",
    "event_to_json",
    "status_after",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """A run was accepted. Always the first event; written with the run's row."""

    run_id: str
    agent: str
    task: str
    user: str | None
    at: datetime
    agent_ref: str | None = None
    """Import reference (``module:attr`` or ``file.py:attr``) another process can load the
    agent from; ``None`` when the run can only be resumed with the agent at hand."""
    kind: Literal["run_started"] = "run_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponded:
    """A model answered; ``step`` counts this response."""

    run_id: str
    step: int
    response: ModelResponse
    at: datetime
    kind: Literal["model_responded"] = "model_responded"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFailed:
    """A model request failed."""

    run_id: str
    step: int
    error_class: str
    message: str
    at: datetime
    kind: Literal["model_failed"] = "model_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseRejected:
    """A model response was refused as a whole.

    The reason is ``duplicate_call_ids`` or ``output_invalid``; the model was given
    ``message`` (and asked again, unless the run ended).
    """

    run_id: str
    step: int
    reason: str
    message: str
    at: datetime
    kind: Literal["response_rejected"] = "response_rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted:
    """The intent to run a tool: journaled (committed) before the function runs.

    A crash between this event and its ``ToolCallFinished`` is resolved by ``effect``:
    ``read`` runs again, ``idempotent`` runs again with the same ``idempotency_key``,
    ``at_most_once`` is marked in doubt for a person to decide.
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    idempotency_key: str
    effect: str
    at: datetime
    kind: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallFinished:
    """A tool call has its result.

    ``executed`` is false when the call was refused before running (bad arguments, unknown
    tool) or answered from an earlier identical call (``repeated``).
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    content: str
    is_error: bool
    error_class: str | None
    executed: bool
    repeated: bool
    at: datetime
    kind: Literal["tool_call_finished"] = "tool_call_finished"
    tier: str | None = None
    """The fallback tool that served the call, or ``None`` when the tool itself did."""
    dedupe_of: str | None = None
    """The run whose result this call reused without running (cross-run dedupe), if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointTaken:
    """The run's state just before a tool with side effects ran (risk not ``read``).

    The journal up to this event is the state to return to: ``tether undo`` compensates
    the calls made from here on, newest first.
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    risk: str
    at: datetime
    kind: Literal["checkpoint_taken"] = "checkpoint_taken"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallInDoubt:
    """An ``at_most_once`` call was started and its outcome is unknown.

    A crash came between intent and result. The call is never run again automatically;
    the run waits in ``needs_review`` for a :class:`ReviewDecided`.
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    at: datetime
    kind: Literal["tool_call_in_doubt"] = "tool_call_in_doubt"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewDecided:
    """A person decided what to do with an in-doubt call.

    ``retry`` runs it again, ``skip`` tells the model the outcome is unknown, ``result``
    records what the call returned (``result`` holds the text the model sees).
    """

    run_id: str
    step: int
    call_id: str
    decision: Literal["retry", "skip", "result"]
    result: str | None
    reviewer: str | None
    at: datetime
    kind: Literal["review_decided"] = "review_decided"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested:
    """A call waits for a person's approval; the run pauses in ``waiting_approval``.

    The call has no intent yet: it runs only after an :class:`ApprovalDecided` that
    approved it, and only once (see :mod:`tether.governance.approvals`).
    """

    run_id: str
    step: int
    call_id: str
    tool: str
    approval_id: str
    reasons: tuple[str, ...]
    """Why the policy asked (see :meth:`~tether.governance.approvals.ApprovalPolicy.decide`)."""
    expires_at: datetime
    at: datetime
    kind: Literal["approval_requested"] = "approval_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalDecided:
    """The approval of a call was answered: ``approved``, ``denied`` or ``expired``.

    An approved call runs when the run continues; a denied or expired one is answered
    with an error result the model sees, and never runs.
    """

    run_id: str
    step: int
    call_id: str
    approval_id: str
    outcome: Literal["approved", "denied", "expired"]
    decided_by: str | None
    comment: str | None
    at: datetime
    kind: Literal["approval_decided"] = "approval_decided"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExhausted:
    """A budget refused the next model call; the run waits for a person to raise it.

    Written only with ``Tether(budget_exhausted="wait")``; otherwise the run ends
    ``budget_exceeded``. ``attempt`` counts the waits at this step (from 1).
    """

    run_id: str
    step: int
    attempt: int
    budget: str
    """The key of the window that refused, such as ``user:ana:day``."""
    message: str
    at: datetime
    kind: Literal["budget_exhausted"] = "budget_exhausted"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetRaised:
    """A person raised the budget a run waited on; the run continues."""

    run_id: str
    step: int
    attempt: int
    budget: str
    raised_by: str | None
    at: datetime
    kind: Literal["budget_raised"] = "budget_raised"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One check of a :class:`~tether.critic.Critic` on one final answer."""

    check: str
    passed: bool
    problem: str | None = None
    """What to fix, when the check failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputReviewed:
    """The critic checked a final answer; ``passed`` when every check did.

    A failed review sends the problems back to the model for a revision, or, after the
    critic's ``max_revisions``, ends the run ``needs_review``.
    """

    run_id: str
    step: int
    passed: bool
    results: tuple[CheckResult, ...]
    at: datetime
    kind: Literal["output_reviewed"] = "output_reviewed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextCompacted:
    """Before the model call of ``step``, the oldest turns were folded into a summary.

    The request then carries the system prompt, the task, the pinned facts and
    ``summary``, and the messages after the first ``folded`` ones that follow the task.
    Resuming applies this record instead of summarising again, so the context is the
    same. ``usage`` and ``cost_usd`` are what a model summary cost (zero otherwise).
    """

    run_id: str
    step: int
    folded: int
    summary: str
    tokens_before: int
    tokens_after: int
    at: datetime
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = Decimal(0)
    kind: Literal["context_compacted"] = "context_compacted"


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitHit:
    """A :class:`~tether.settings.RunLimits` cap ended the run."""

    run_id: str
    limit: str
    status: RunStatus
    at: datetime
    kind: Literal["limit_hit"] = "limit_hit"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """The run ended. Always the last event of a run, exactly once."""

    run_id: str
    status: RunStatus
    output: str | None
    error_class: str | None
    error_message: str | None
    at: datetime
    kind: Literal["run_finished"] = "run_finished"


Event = (
    RunStarted
    | ModelResponded
    | ModelFailed
    | ResponseRejected
    | CheckpointTaken
    | ToolCallStarted
    | ToolCallFinished
    | ToolCallInDoubt
    | ReviewDecided
    | ApprovalRequested
    | ApprovalDecided
    | BudgetExhausted
    | BudgetRaised
    | OutputReviewed
    | ContextCompacted
    | LimitHit
    | RunFinished
)
"""Any run event."""

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_to_json(event: Event) -> bytes:
    """Serialise an event to JSON bytes (datetimes ISO 8601, decimals as strings)."""
    return _ADAPTER.dump_json(event)


def event_from_json(data: bytes | str) -> Event:
    """Parse JSON produced by :func:`event_to_json` back into the same event."""
    return _ADAPTER.validate_json(data)


def status_after(event: Event) -> RunStatus | None:
    """The run status an event moves its run to, or ``None`` when it does not change it."""
    if isinstance(event, RunFinished):
        return event.status
    if isinstance(event, ToolCallInDoubt):
        return RunStatus.NEEDS_REVIEW
    if isinstance(event, ApprovalRequested | BudgetExhausted):
        return RunStatus.WAITING_APPROVAL
    if isinstance(event, ReviewDecided | ApprovalDecided | BudgetRaised):
        return RunStatus.RUNNING
    return None
