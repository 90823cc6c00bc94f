"""The shared benchmark workload: the quick-start calculator as 4 tool calls and an answer.

Imported by the scripts in ``bench/`` (run them as ``python bench/<name>.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

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


Recorder = Callable[[int, str], None]
"""``(seq, body)``: called once per step by a durable baseline."""


async def raw_loop(model: ReplayModel, task: str, record: Recorder | None = None) -> str:
    """What a careful developer writes by hand: call, parse, dispatch, append.

    With ``record``, each step (response or tool result) is also written durably, as the
    cheapest honest durable baseline does: one row per step.
    """
    tools = {"add": plain_add}
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    seq = 0
    for _ in range(20):
        response = await model.request(messages, (), ModelSettings())  # type: ignore[arg-type]
        if record is not None:
            seq += 1
            calls = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
            ]
            record(seq, json.dumps({"text": response.text, "tool_calls": calls}))
        if not response.tool_calls:
            return response.text or ""
        messages.append({"role": "assistant", "tool_calls": response.tool_calls})
        for tool_call in response.tool_calls:
            try:
                result = str(tools[tool_call.name](**json.loads(tool_call.arguments)))
            except Exception as exc:
                result = f"error: {exc}"
            if record is not None:
                seq += 1
                record(seq, json.dumps({"id": tool_call.id, "content": result}))
            messages.append({"role": "tool", "id": tool_call.id, "content": result})
    return ""
