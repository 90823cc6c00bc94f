"""tether: a durable, bounded and observable runtime for LLM agents.

The quick start::

    from tether import Agent, RunLimits, RunStatus, tool
    from tether.testing import ScriptedModel, call

    @tool(risk="read")
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b

    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "The sum is 3."])
    agent = Agent(name="calc", model=model, tools=[add], limits=RunLimits(max_steps=10))
    result = agent.run_sync("What is 1 + 2?")
    assert result.status is RunStatus.COMPLETED
"""

from importlib.metadata import PackageNotFoundError, version

from tether.agent import Agent
from tether.clock import Clock, SystemClock
from tether.errors import AgentLoadError, ConfigurationError, ModelError, TetherError, ToolError
from tether.events import (
    CheckpointTaken,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    ResponseRejected,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    event_from_json,
    event_to_json,
)
from tether.messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from tether.models import Model, ModelSettings
from tether.run import RunError, RunResult
from tether.runtime import Tether
from tether.settings import RunLimits
from tether.status import RunStatus
from tether.store import InMemoryStore, Store
from tether.tools import Compensation, Effect, Risk, RunContext, Tool, tool

try:
    __version__ = version("tether")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Agent",
    "AgentLoadError",
    "AssistantMessage",
    "CheckpointTaken",
    "Clock",
    "Compensation",
    "ConfigurationError",
    "Effect",
    "Event",
    "InMemoryStore",
    "LimitHit",
    "Message",
    "Model",
    "ModelError",
    "ModelFailed",
    "ModelResponded",
    "ModelResponse",
    "ModelSettings",
    "ResponseRejected",
    "Risk",
    "RunContext",
    "RunError",
    "RunFinished",
    "RunLimits",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "Store",
    "SystemClock",
    "SystemMessage",
    "Tether",
    "TetherError",
    "Tool",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolDefinition",
    "ToolError",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
    "__version__",
    "event_from_json",
    "event_to_json",
    "tool",
]
