"""Anthropic's Messages API through the official SDK.

``AnthropicModel("claude-sonnet-5")`` reads ``ANTHROPIC_API_KEY`` (and
``ANTHROPIC_BASE_URL``) when the arguments are not given. tether's messages map to the
Messages format like this:

- system messages become the top-level ``system`` parameter;
- an assistant turn is a list of ``text`` and ``tool_use`` blocks (a call's arguments,
  JSON text in tether, are sent as the object they encode);
- tool results become ``tool_result`` blocks (``is_error`` kept) at the start of the next
  user message, and a user message right after them joins that message, so roles
  alternate as the API requires.

``ModelSettings.temperature`` is not sent: the Messages API of the SDK this adapter is
built on (2.x) has no sampling parameters.

As with :class:`~tether.models.OpenAIModel`, the SDK's own retries are off; wrap the
model in :class:`~tether.models.ResilientModel` (``"anthropic:..."`` names come wrapped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anthropic

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError
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
from tether.models.base import ModelSettings
from tether.models.failures import invalid_response, status_error, timed_out, unreachable
from tether.models.pricing import Price, cost_usd

__all__ = ["AnthropicModel"]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TOKENS = 1024


class AnthropicModel:
    """A Claude model behind Anthropic's Messages API.

    Args:
        model: The model name, such as ``claude-sonnet-5``.
        api_key: Default: ``ANTHROPIC_API_KEY``.
        base_url: Default: ``ANTHROPIC_BASE_URL``, else Anthropic.
        timeout: Seconds allowed for one request. Default 60.
        price: Price per million tokens, overriding the bundled price table. Default: the
            table.
        client: A ready ``anthropic.AsyncAnthropic`` (tests, proxies). Default: built here.
        clock: Reads ``Retry-After`` dates. Default: the system clock.

    Raises:
        ConfigurationError: No API key.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        price: Price | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.model = model
        self.price = price
        self.clock = clock or SystemClock()
        if client is None:
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise ConfigurationError(
                    f"anthropic:{model} needs an API key: set ANTHROPIC_API_KEY or pass api_key="
                )
            client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                timeout=timeout,
                max_retries=0,
            )
        self.client = client

    @property
    def name(self) -> str:
        """``anthropic:<model>``."""
        return f"anthropic:{self.model}"

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self.client.close()

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Send one Messages request; see :meth:`tether.models.Model.request`."""
        system, turns = to_anthropic(messages)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": settings.max_output_tokens or DEFAULT_MAX_TOKENS,
            "messages": turns,
        }
        if system:
            params["system"] = system
        if tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
        try:
            reply = await self.client.messages.create(**params)
        except anthropic.APIStatusError as exc:
            code, message = _error_of(exc)
            raise status_error(
                exc.status_code,
                provider="anthropic",
                message=message,
                code=code,
                headers=exc.response.headers,
                now=self.clock.now(),
            ) from None
        except anthropic.APITimeoutError:
            raise timed_out("anthropic") from None
        except anthropic.APIConnectionError as exc:
            raise unreachable("anthropic", exc) from None
        except anthropic.APIError as exc:
            raise invalid_response("anthropic", exc.message) from None
        return self._response(reply)

    def _response(self, reply: Any) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in reply.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                arguments = json.dumps(block.input, ensure_ascii=False, separators=(",", ":"))
                calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
        counted = reply.usage
        cache_read = counted.cache_read_input_tokens or 0
        cache_write = counted.cache_creation_input_tokens or 0
        # Anthropic's input_tokens excludes cached tokens; tether counts all input.
        usage = Usage(
            input_tokens=counted.input_tokens + cache_read + cache_write,
            output_tokens=counted.output_tokens,
        )
        cost: Decimal | None = cost_usd(
            usage,
            provider="anthropic",
            model=self.model,
            price=self.price,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
        return ModelResponse(
            text="".join(texts) or None,
            tool_calls=tuple(calls),
            usage=usage,
            cost_usd=cost,
            model_name=self.name,
            finish_reason=reply.stop_reason,
        )


def to_anthropic(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Return the ``system`` text and the alternating ``messages`` for a request."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.content)
        elif isinstance(message, AssistantMessage):
            turns.append({"role": "assistant", "content": _assistant_blocks(message)})
        elif isinstance(message, ToolResultMessage):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.call_id,
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            _user_blocks(turns).append(block)
        else:
            assert isinstance(message, UserMessage)  # the Message union is closed
            _user_blocks(turns).append({"type": "text", "text": message.content})
    return "\n\n".join(system), turns


def _user_blocks(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks of the user message at the end of ``turns``, started if need be."""
    if not turns or turns[-1]["role"] != "user":
        turns.append({"role": "user", "content": []})
    blocks: list[dict[str, Any]] = turns[-1]["content"]
    return blocks


def _assistant_blocks(message: AssistantMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _input_of(call)}
        for call in message.tool_calls
    )
    return blocks


def _input_of(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as the object Anthropic wants.

    Arguments that are not a JSON object (another model wrote them; the call was refused
    with a validation error) are sent as ``{"invalid_arguments": <the text>}``, so the
    model still sees what was asked.
    """
    try:
        value = json.loads(call.arguments)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"invalid_arguments": call.arguments}


def _error_of(exc: anthropic.APIStatusError) -> tuple[str | None, str]:
    """The error type and message from an Anthropic error body."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            code = error.get("type")
            message = error.get("message")
            return (
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else exc.message,
            )
    return None, exc.message
