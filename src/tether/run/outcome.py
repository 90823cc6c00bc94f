"""The result of a run: one terminal status, the output and everything measured."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic

from pydantic import TypeAdapter
from typing_extensions import TypeVar

from tether.messages import Message, Usage
from tether.status import RunStatus

__all__ = ["OutputT", "RunError", "RunResult"]

OutputT = TypeVar("OutputT", default=str)
"""Type of a run's output: ``str``, or the agent's ``output_type``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunError:
    """Why a run did not complete."""

    error_class: str
    """Stable identifier, such as ``model_error``, ``loop_detected`` or ``too_many_errors``."""
    message: str
    """Human-readable explanation."""


@dataclass(frozen=True, kw_only=True)
class RunResult(Generic[OutputT]):
    """How a run ended. Returned by every run; expected endings never raise."""

    run_id: str
    """Id of the run; its journal is in the store under this id."""
    agent: str
    """Name of the agent that ran."""
    status: RunStatus
    """The terminal status."""
    output: OutputT | None
    """The final answer. After a limit, the last text the model produced (partial), or
    ``None`` for agents with an ``output_type``."""
    error: RunError | None
    """Set for ``failed`` and the limit statuses; ``None`` when completed."""
    steps: int
    """Model responses plus tool calls."""
    tool_calls: int
    """Tool calls processed: executed, refused for bad input, or answered from an earlier
    identical call. Calls not run because a limit was reached are not counted."""
    usage: Usage
    """Tokens over all model calls."""
    cost_usd: Decimal | None
    """Total model cost in US dollars; ``None`` when any price was unknown."""
    degraded: bool
    """Whether a fallback served any step."""
    started_at: datetime
    """When the run started (UTC)."""
    finished_at: datetime
    """When the run ended (UTC)."""
    messages: tuple[Message, ...]
    """The conversation as the model saw it, ending with the last response."""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-compatible values (messages excluded)."""
        output: Any = self.output
        if output is not None and not isinstance(output, str):
            output = TypeAdapter(type(output)).dump_python(output, mode="json")
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "status": self.status.value,
            "output": output,
            "error": None
            if self.error is None
            else {"error_class": self.error.error_class, "message": self.error.message},
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "degraded": self.degraded,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }
