"""Typed events of a run, named in the past tense.

Events go to subscribers as they happen and are appended to the run's journal in the
:class:`~tether.store.Store`. They are plain frozen dataclasses; :func:`event_to_json`
and :func:`event_from_json` round-trip them exactly (``kind`` discriminates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter

from tether.messages import ModelResponse
from tether.status import RunStatus

__all__ = [
    "Event",
    "LimitHit",
    "ModelFailed",
    "ModelResponded",
    "ResponseRejected",
    "RunFinished",
    "RunStarted",
    "ToolCallFinished",
    "ToolCallStarted",
    "event_from_json",
    "event_to_json",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """A run was accepted and began."""

    run_id: str
    agent: str
    task: str
    user: str | None
    at: datetime
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
    """A tool function is about to run with validated ``arguments``."""

    run_id: str
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
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
    | ToolCallStarted
    | ToolCallFinished
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
