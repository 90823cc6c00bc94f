"""Running an agent: the bounded loop, its state and its result."""

from tether.run.loop import AgentSpec, Run, Subscriber
from tether.run.outcome import OutputT, RunError, RunResult

__all__ = ["AgentSpec", "OutputT", "Run", "RunError", "RunResult", "Subscriber"]
