"""Fake models that record every request, so tests can assert what the model was told.

:class:`ScriptedModel` plays a list of responses; :class:`FunctionModel` asks a function.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tether.errors import ModelError
from tether.messages import Message, ModelResponse, ToolCall, ToolDefinition
from tether.models import ModelSettings

__all__ = ["FunctionModel", "ModelRequest", "ScriptItem", "ScriptedModel", "call"]

ScriptItem = str | ToolCall | Sequence[ToolCall] | BaseException | ModelResponse
"""One scripted response: final text, one call, parallel calls, a failure, or a full
:class:`~tether.messages.ModelResponse` (to set usage and cost)."""


def call(name: str, args: dict[str, Any] | str | None = None, *, id: str = "") -> ToolCall:
    """Build a scripted tool call.

    Args:
        name: Tool name, exactly as the model would write it.
        args: A dict (serialised to JSON) or a raw string sent as is, so tests can send
            malformed JSON. Default ``{}``.
        id: Call id; default: assigned by the model as ``call_<request>_<index>``.
    """
    raw = args if isinstance(args, str) else json.dumps(args or {})
    return ToolCall(id=id, name=name, arguments=raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    """What a fake model received in one request."""

    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...]
    settings: ModelSettings


class _RecordingModel:
    def __init__(self, name: str) -> None:
        self._name = name
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    @property
    def name(self) -> str:
        """The model name given at construction."""
        return self._name

    def _record(
        self, messages: Sequence[Message], tools: Sequence[ToolDefinition], settings: ModelSettings
    ) -> int:
        self.requests.append(
            ModelRequest(messages=tuple(messages), tools=tuple(tools), settings=settings)
        )
        return len(self.requests)

    def _response(self, item: ScriptItem, request_number: int) -> ModelResponse:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ModelResponse):
            response = item
        elif isinstance(item, str):
            response = ModelResponse(text=item)
        elif isinstance(item, ToolCall):
            response = ModelResponse(tool_calls=(item,))
        else:
            response = ModelResponse(tool_calls=tuple(item))
        calls = tuple(
            c
            if c.id
            else ToolCall(id=f"call_{request_number}_{i}", name=c.name, arguments=c.arguments)
            for i, c in enumerate(response.tool_calls)
        )
        name = self._name if response.model_name == "unknown" else response.model_name
        return replace(response, tool_calls=calls, model_name=name)


class ScriptedModel(_RecordingModel):
    """Answers with the next item of a script; running out is a ``ModelError``.

    Example::

        model = ScriptedModel([call("add", {"a": 1, "b": 2}), "The sum is 3."])

    Args:
        script: The responses, in order (see :data:`ScriptItem`).
        name: Model name reported in results. Default ``"scripted"``.
    """

    def __init__(self, script: Sequence[ScriptItem], *, name: str = "scripted") -> None:
        super().__init__(name)
        self._script = list(script)

    @property
    def remaining(self) -> int:
        """Script items not yet used."""
        return max(0, len(self._script) - len(self.requests))

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Return the next scripted response (or raise the scripted exception)."""
        number = self._record(messages, tools, settings)
        if number > len(self._script):
            raise ModelError(
                f"the script has {len(self._script)} responses and request {number} was made",
                error_class="script_exhausted",
            )
        return self._response(self._script[number - 1], number)


ResponseFunction = Callable[
    [Sequence[Message], Sequence[ToolDefinition]], ScriptItem | Awaitable[ScriptItem]
]
"""``(messages, tools) -> item``, sync or async; may raise to fail the request."""


class FunctionModel(_RecordingModel):
    """Asks a function for each response, so tests can react to what the model sees.

    Args:
        function: ``(messages, tools) -> ScriptItem`` (sync or async).
        name: Model name reported in results. Default ``"function"``.
    """

    def __init__(self, function: ResponseFunction, *, name: str = "function") -> None:
        super().__init__(name)
        self._function = function

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Call the function and return its answer as a response."""
        number = self._record(messages, tools, settings)
        item = self._function(messages, tools)
        if inspect.isawaitable(item):
            item = await item
        return self._response(item, number)
