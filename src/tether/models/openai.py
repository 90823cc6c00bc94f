"""OpenAI Chat Completions, and every server that speaks it, through the official SDK.

``OpenAIModel("gpt-4.1")`` talks to OpenAI; with ``base_url`` it talks to any
OpenAI-compatible server (vLLM, Ollama, llama.cpp's ``llama-server``,
``llama_cpp.server``). ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` are read when the
arguments are not given.

The SDK's own retries are switched off (``max_retries=0``): retrying is the job of
:class:`~tether.models.ResilientModel`, which honours ``Retry-After``, jitters, keeps a
deadline and feeds a circuit breaker. Stacked retry layers multiply attempts.

With ``stream=True`` the response is read as server-sent events and assembled here. A
stream that ends without a finish reason (or is cut inside tool-call arguments, or sends
a chunk that does not parse) raises ``stream_truncated``: none of its tool calls is
returned, so none is executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import openai

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError, ModelError
from tether.messages import Message, ModelResponse, ToolCall, ToolDefinition, Usage
from tether.models.base import ModelSettings
from tether.models.failures import invalid_response, status_error, stream_truncated
from tether.models.pricing import Price, cost_usd
from tether.models.wire import message_to_wire, tool_to_wire

__all__ = ["OpenAIModel"]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TOKENS = 1024


class OpenAIModel:
    """A model behind the OpenAI Chat Completions API.

    Args:
        model: The model name sent to the server, such as ``gpt-4.1``.
        base_url: The API root, such as ``http://127.0.0.1:8000/v1``. Default:
            ``OPENAI_BASE_URL``, else OpenAI.
        api_key: Default: ``OPENAI_API_KEY``; a placeholder when a ``base_url`` is set
            (local servers ignore it).
        stream: Read responses as a stream. Default ``False``.
        timeout: Seconds allowed for one request. Default 60.
        price: Price per million tokens, overriding the bundled price table. Default: the
            table for OpenAI itself; unknown (``None`` cost) for other servers.
        client: A ready ``openai.AsyncOpenAI`` (tests, proxies). Default: built here.
        clock: Reads ``Retry-After`` dates. Default: the system clock.

    Raises:
        ConfigurationError: No API key for OpenAI itself.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        stream: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        price: Price | None = None,
        client: openai.AsyncOpenAI | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.model = model
        self.clock = clock or SystemClock()
        self.stream = stream
        self.price = price
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.provider = "openai" if base_url is None else base_url
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if key is None and base_url is None:
                raise ConfigurationError(
                    f"openai:{model} needs an API key: set OPENAI_API_KEY or pass api_key=, "
                    "or set base_url= for an OpenAI-compatible server"
                )
            client = openai.AsyncOpenAI(
                api_key=key or "not-needed",
                base_url=base_url,
                timeout=timeout,
                max_retries=0,
            )
        self.client = client

    @property
    def name(self) -> str:
        """``openai:<model>``."""
        return f"openai:{self.model}"

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Send one Chat Completions request; see :meth:`tether.models.Model.request`."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [message_to_wire(m) for m in messages],
            "max_tokens": settings.max_output_tokens or DEFAULT_MAX_TOKENS,
        }
        if tools:
            params["tools"] = [tool_to_wire(t) for t in tools]
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        try:
            if self.stream:
                text, calls, finish, usage = await self._streamed(params)
            else:
                text, calls, finish, usage = await self._whole(params)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise ModelError(
                f"{self.provider} did not answer in time",
                error_class="timeout",
                retryable=True,
            ) from None
        except openai.APIConnectionError as exc:
            raise ModelError(
                f"{self.provider} could not be reached: {exc}",
                error_class="connection_error",
                retryable=True,
            ) from None
        except openai.APIError as exc:  # an error event inside a stream, a bad body
            raise invalid_response(self.provider, exc.message) from None
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=usage,
            cost_usd=self._cost(usage),
            model_name=self.name,
            finish_reason=finish,
        )

    async def _whole(
        self, params: dict[str, Any]
    ) -> tuple[str | None, tuple[ToolCall, ...], str | None, Usage]:
        completion = await self.client.chat.completions.create(**params)
        error = getattr(completion, "error", None)
        if error is not None:  # HTTP 200 with an error body
            raise ModelError(
                f"{self.provider} answered 200 with an error: {error}",
                error_class="server_error",
                retryable=True,
            )
        if not completion.choices:
            raise invalid_response(self.provider, "no choices")
        choice = completion.choices[0]
        message = choice.message
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
            for c in message.tool_calls or ()
            if c.type == "function"
        )
        usage = completion.usage
        tokens = (
            Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
            if usage is not None
            else Usage()
        )
        return message.content, calls, choice.finish_reason, tokens

    async def _streamed(
        self, params: dict[str, Any]
    ) -> tuple[str | None, tuple[ToolCall, ...], str | None, Usage]:
        stream = await self.client.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}
        )
        text: list[str] = []
        parts: dict[int, dict[str, Any]] = {}
        finish: str | None = None
        usage = Usage()
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(
                        input_tokens=chunk.usage.prompt_tokens,
                        output_tokens=chunk.usage.completion_tokens,
                    )
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                    for piece in delta.tool_calls or ():
                        _merge_call(parts.setdefault(piece.index, {}), piece)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
        except json.JSONDecodeError as exc:
            raise stream_truncated(self.provider, f"a chunk did not parse: {exc}") from None
        if finish is None:
            raise stream_truncated(self.provider, "no finish reason")
        calls = tuple(_assembled(parts[i], self.provider) for i in sorted(parts))
        return ("".join(text) or None), calls, finish, usage

    def _status_error(self, exc: openai.APIStatusError) -> ModelError:
        return status_error(
            exc.status_code,
            provider=self.provider,
            message=_message_of(exc),
            code=exc.code or (exc.type if isinstance(exc.type, str) else None),
            headers=exc.response.headers,
            now=self.clock.now(),
        )

    def _cost(self, usage: Usage) -> Decimal | None:
        if self.price is None and self.provider != "openai":
            return None  # a self-hosted server: unknown unless a price is given
        return cost_usd(usage, provider="openai", model=self.model, price=self.price)


def _merge_call(part: dict[str, Any], piece: Any) -> None:
    if piece.id:
        part["id"] = piece.id
    function = piece.function
    if function is not None:
        if function.name:
            part["name"] = part.get("name", "") + function.name
        if function.arguments:
            part["arguments"] = part.get("arguments", "") + function.arguments


def _assembled(part: dict[str, Any], provider: str) -> ToolCall:
    arguments = part.get("arguments", "")
    if "id" not in part or "name" not in part:
        raise stream_truncated(provider, "a tool call without its id or name")
    try:
        json.loads(arguments or "{}")
    except ValueError:
        raise stream_truncated(provider, "tool-call arguments cut short") from None
    return ToolCall(id=part["id"], name=part["name"], arguments=arguments)


def _message_of(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message
