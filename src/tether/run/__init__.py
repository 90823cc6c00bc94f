"""Running an agent: the bounded loop, its journal, replay and result."""

from tether.run.journal import Journal, Subscriber
from tether.run.loop import AgentSpec, BudgetExhaustedAction, InDoubt, Run
from tether.run.outcome import OutputT, RunError, RunResult
from tether.run.replay import Replay
from tether.run.summary import result_from_journal

__all__ = [
    "AgentSpec",
    "BudgetExhaustedAction",
    "InDoubt",
    "Journal",
    "OutputT",
    "Replay",
    "Run",
    "RunError",
    "RunResult",
    "Subscriber",
    "result_from_journal",
]
