"""The agent of ``bench/recovery.py``, loadable as ``bench._recovery_agent:agent``.

Its model is a pure function of the conversation (one ``lookup`` call, then an answer),
so a run resumed by any worker gets the same responses. It records nothing, so 10,000
runs do not accumulate requests in memory; ``executions`` counts tool executions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tether import Agent, ModelResponse, RunLimits, ToolCall, tool
from tether.messages import Message, ToolDefinition, ToolResultMessage, UserMessage
from tether.models import ModelSettings

executions = [0]


@tool(risk="read")
def lookup(key: str) -> str:
    """Read a value."""
    executions[0] += 1
    return f"value-of-{key}"


class PureModel:
    """One ``lookup`` of the task, then the answer; no state."""

    name = "pure"

    async def request(
        self, messages: Sequence[Message], tools: Sequence[ToolDefinition], settings: ModelSettings
    ) -> ModelResponse:
        if any(isinstance(m, ToolResultMessage) for m in messages):
            return ModelResponse(text="done")
        task = next(m.content for m in messages if isinstance(m, UserMessage))
        arguments = json.dumps({"key": task})
        return ModelResponse(
            tool_calls=(ToolCall(id="call_1", name="lookup", arguments=arguments),)
        )


agent = Agent(name="recovery", model=PureModel(), tools=[lookup], limits=RunLimits(max_steps=10))
