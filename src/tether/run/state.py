"""The mutable state of one run: the conversation and the counters the limits read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tether.messages import Message, Usage, add_costs

__all__ = ["RunState"]


@dataclass(slots=True, kw_only=True)
class RunState:
    """Everything a run has accumulated. Owned by one run; never shared."""

    run_id: str
    agent: str
    user: str | None
    started_at: datetime
    messages: list[Message] = field(default_factory=list[Message])
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = Decimal(0)
    consecutive_errors: int = 0
    output_retries: int = 0
    critic_revisions: int = 0
    """Final answers the critic sent back for a revision."""
    last_text: str | None = None
    degraded: bool = False
    results_by_digest: dict[str, tuple[int, str]] = field(
        default_factory=dict[str, tuple[int, str]]
    )
    """Successful results of executed calls: digest -> (step, content)."""
    repeats: dict[str, int] = field(default_factory=dict[str, int])
    """How often each call digest was repeated after its first execution."""

    def charge(self, usage: Usage, cost_usd: Decimal | None) -> None:
        """Add a model call's tokens and cost; once any cost is unknown the total is."""
        self.usage = self.usage + usage
        self.cost_usd = add_costs(self.cost_usd, cost_usd)
