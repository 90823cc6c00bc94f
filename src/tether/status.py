"""Run statuses. Values are persisted and stable: never rename one."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RunStatus"]


class RunStatus(StrEnum):
    """Where a run is, or how it ended. Every run ends in exactly one terminal status."""

    PENDING = "pending"
    """Accepted, not started."""
    RUNNING = "running"
    """In progress."""
    WAITING_APPROVAL = "waiting_approval"
    """Paused until a person approves or denies a call."""
    WAITING_USER = "waiting_user"
    """Paused until the user answers a question."""
    COMPLETED = "completed"
    """Final answer produced."""
    FAILED = "failed"
    """Ended by an unrecoverable error; see ``RunResult.error``."""
    MAX_STEPS = "max_steps"
    """``RunLimits.max_steps`` was reached."""
    TIMED_OUT = "timed_out"
    """``RunLimits.max_duration`` was reached."""
    TOKEN_LIMIT = "token_limit"
    """``RunLimits.max_tokens`` was reached."""
    TOOL_CALL_LIMIT = "tool_call_limit"
    """``RunLimits.max_tool_calls`` was reached."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """A money budget refused the next call."""
    NEEDS_REVIEW = "needs_review"
    """A person must look (an effect in doubt after a crash, or the critic gave up)."""
    BLOCKED = "blocked"
    """An upstream dependency failed or was cancelled."""
    CANCELLED = "cancelled"
    """Cancelled by a person or an API call."""

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended (no further transition is possible)."""
        return self not in _NON_TERMINAL


_NON_TERMINAL = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL, RunStatus.WAITING_USER}
)
