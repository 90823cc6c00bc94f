"""The shared benchmark workload: the quick-start calculator as 4 tool calls and an answer.

Imported by the scripts in ``bench/`` (run them as ``python bench/<name>.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tether import ModelResponse, ToolCall, tool
from tether.messages import Message, ToolDefinition
from tether.models import ModelSettings

STEPS = 9
"""5 model responses + 4 tool calls."""


def plain_add(a: int, b: int) -> int:
    return a + b


add = tool(name="add", risk="read")(plain_add)


def responses() -> list[ModelResponse]:
    """Four single-call responses, then the final answer."""
    calls = [
        ToolCall(id=f"call_{i}", name="add", arguments=json.dumps({"a": i, "b": i + 1}))
        for i in range(4)
    ]
    return [ModelResponse(tool_calls=(c,)) for c in calls] + [ModelResponse(text="Done: 28.")]


class ReplayModel:
    """Returns pre-built responses in order; the cheapest possible model."""

    name = "replay"

    def __init__(self, script: list[ModelResponse]) -> None:
        self.script = script
        self.index = 0

    async def request(
        self, messages: Sequence[Message], tools: Sequence[ToolDefinition], settings: ModelSettings
    ) -> ModelResponse:
        response = self.script[self.index]
        self.index += 1
        return response
