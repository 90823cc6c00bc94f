"""The OpenAI Chat Completions message format, which llama.cpp's chat handlers share.

See the OpenAI API reference: a tool call's arguments are a JSON *string*, and each tool
result is its own ``role: "tool"`` message naming the call it answers.
"""

from __future__ import annotations

from typing import Any

from tether.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)

__all__ = ["message_to_wire", "tool_to_wire"]


def message_to_wire(message: Message) -> dict[str, Any]:
    """Return ``message`` as a Chat Completions message."""
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.content}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, AssistantMessage):
        # No text is "", not null: OpenAI takes either beside tool calls, but
        # llama_cpp.server answers HTTP 500 to null and to a missing "content".
        wire: dict[str, Any] = {"role": "assistant", "content": message.text or ""}
        if message.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in message.tool_calls
            ]
        return wire
    assert isinstance(message, ToolResultMessage)  # the Message union is closed
    return {"role": "tool", "tool_call_id": message.call_id, "content": message.content}


def tool_to_wire(tool: ToolDefinition) -> dict[str, Any]:
    """Return ``tool`` as a Chat Completions ``function`` tool."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }
