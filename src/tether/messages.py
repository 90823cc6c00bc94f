"""The normalised conversation: messages, tool calls, model responses and usage.

These are the values a :class:`~tether.models.Model` receives and returns, and what the
journal records. Provider adapters translate them to and from their wire formats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "AssistantMessage",
    "Message",
    "ModelResponse",
    "SystemMessage",
    "ToolCall",
    "ToolDefinition",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
    "add_costs",
    "estimate_tokens",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One tool call requested by a model.

    ``arguments`` is the raw JSON text the model produced. It is untrusted: tether parses
    and validates it before any function sees it.
    """

    id: str
    """Call id chosen by the model or adapter; unique within one response."""
    name: str
    """The tool name exactly as the model wrote it."""
    arguments: str
    """Raw JSON text of the arguments (may be malformed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts reported by a model provider."""

    input_tokens: int = 0
    """Prompt tokens. Default 0."""
    output_tokens: int = 0
    """Completion tokens. Default 0."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponse:
    """What a model returned for one request: text, tool calls or both."""

    text: str | None = None
    """Assistant text, or ``None``."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls requested in this response (several run concurrently)."""
    usage: Usage = field(default_factory=Usage)
    """Tokens used by this request."""
    cost_usd: Decimal | None = Decimal(0)
    """Cost of this request in US dollars; ``None`` when the price is unknown."""
    model_name: str = "unknown"
    """Name of the model that served the request."""
    finish_reason: str | None = None
    """Why the model stopped, as the provider said (``stop``, ``tool_calls``, ``length``,
    ``tool_use``), or ``None`` when it did not say."""
    attempts: int = 1
    """Requests made to get this response (more than 1 after retries)."""
    degraded: bool = False
    """Whether a fallback served the request instead of the primary model."""
    confidence: float | None = None
    """The model's confidence in this response in ``[0, 1]``, when the adapter reports
    one; an :class:`~tether.governance.approvals.ApprovalPolicy` with ``min_confidence``
    asks a person when it is low. Untrusted: anything not in ``[0, 1]`` counts as 0."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemMessage:
    """Instructions for the model."""

    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage:
    """A message from the user, or feedback from the runtime to the model."""

    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantMessage:
    """A model's turn: its text and the tool calls it requested."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultMessage:
    """The result of one tool call, sent back to the model.

    Every tool call in an :class:`AssistantMessage` gets exactly one result before the
    model is asked again.
    """

    call_id: str
    """The :attr:`ToolCall.id` this answers."""
    name: str
    """The tool name as the model wrote it."""
    content: str
    """Result text (JSON for structured values and errors)."""
    is_error: bool = False
    """Whether the call failed (the content then describes the error)."""
    role: Literal["tool"] = "tool"


Message = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage
"""Any message of a conversation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDefinition:
    """What a model is told about a tool: its name, description and JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema (draft 2020-12) of the arguments object."""


def estimate_tokens(messages: Sequence[Message], tools: Sequence[ToolDefinition] = ()) -> int:
    """A high estimate of a request's input tokens: ``ceil(utf8 bytes / 3)``.

    Tokenizers average about four bytes of English per token; three leaves room for
    other text and for the provider's own framing. Counts message text, tool call names
    and arguments, and tool definitions. Budgets reserve with it, and
    :class:`~tether.context.ContextPolicy` uses it unless given a model's own counter.
    """
    size = 0
    for message in messages:
        if isinstance(message, AssistantMessage):
            size += len(message.text.encode()) if message.text else 0
            for call in message.tool_calls:
                size += len(call.name.encode()) + len(call.arguments.encode())
        else:
            size += len(message.content.encode())
            if isinstance(message, ToolResultMessage):
                size += len(message.name.encode())
    for tool in tools:
        size += len(tool.name.encode()) + len(tool.description.encode())
        size += len(json.dumps(tool.parameters).encode())
    return math.ceil(size / 3)


def add_costs(total: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """``total + cost`` in US dollars; once either is unknown (``None``), so is the sum."""
    return None if total is None or cost is None else total + cost
