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
from tether.models.failures import (
    invalid_response,
    status_error,
    stream_truncated,
    timed_out,
    unreachable,
)
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

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self.client.close()

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Send one Chat Completions request; see :meth:`tether.models.Model.request`.

        Raises:
            ModelError: The request failed; see :mod:`tether.models.failures` for the
                classes (a cut or inconsistent stream is ``stream_truncated``).
        """
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [message_to_wire(m) for m in messages],
            "max_tokens": settings.max_output_tokens or DEFAULT_MAX_TOKENS,
        }
        if tools:
            params["tools"] = [tool_to_wire(t) for t in tools]
            # OpenAI's default when tools are given; llama_cpp.server ignores the tools
            # unless it is sent.
            params["tool_choice"] = "auto"
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        try:
            if self.stream:
                return await self._streamed(params)
            return await self._whole(params)
        except openai.APITimeoutError:  # a subclass of APIConnectionError: first
            raise timed_out(self.provider) from None
        except openai.APIConnectionError as exc:
            raise unreachable(self.provider, exc) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APIError as exc:  # an error event inside a 200 stream
            raise ModelError(
                f"{self.provider} answered 200 with an error: {exc.message}",
                error_class="server_error",
                retryable=True,
            ) from None
        except ValueError as exc:  # a body or chunk that is not JSON
            raise invalid_response(self.provider, f"not JSON: {exc}") from None

    async def _whole(self, params: dict[str, Any]) -> ModelResponse:
        completion = await self.client.chat.completions.create(**params)
        error = (completion.model_extra or {}).get("error")
        if error is not None:  # HTTP 200 whose body is an error
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
        counted = completion.usage
        usage = (
            Usage(input_tokens=counted.prompt_tokens, output_tokens=counted.completion_tokens)
            if counted is not None
            else None
        )
        # "" is no text, as it is when streamed (llama_cpp.server can answer "").
        return self._response(message.content or None, calls, choice.finish_reason, usage)

    async def _streamed(self, params: dict[str, Any]) -> ModelResponse:
        stream = await self.client.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}
        )
        assembly = _Assembly(self.provider)
        try:
            async with stream:  # closes the connection however the stream ends
                async for chunk in stream:
                    assembly.add(chunk)
        except openai.APITimeoutError:
            raise stream_truncated(self.provider, "it stalled") from None
        except openai.APIConnectionError:
            if assembly.finish is None:
                raise stream_truncated(self.provider, "the connection dropped") from None
            # Only the usage chunk or [DONE] was lost: the answer itself is complete.
        except ValueError as exc:
            raise stream_truncated(self.provider, f"a chunk is not JSON: {exc}") from None
        text, calls, finish = assembly.result()
        return self._response(text, calls, finish, assembly.usage)

    def _response(
        self,
        text: str | None,
        calls: tuple[ToolCall, ...],
        finish: str | None,
        usage: Usage | None,
    ) -> ModelResponse:
        """A response; without reported usage its tokens read 0 and its cost is unknown."""
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=usage or Usage(),
            cost_usd=None if usage is None else self._cost(usage),
            model_name=self.name,
            finish_reason=finish,
        )

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


class _Assembly:
    """Puts a streamed answer together, and refuses one that is not whole.

    Whole means: exactly one chunk gave a finish reason and no content came after it;
    every tool call got one id and one name (llama_cpp.server repeats both in every
    delta; only a change is wrong); every call's arguments parse as a JSON object.
    Anything else raises ``stream_truncated``, so none of its calls is ever executed.
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None

    def add(self, chunk: Any) -> None:
        if chunk.usage is not None:
            self.usage = Usage(
                input_tokens=chunk.usage.prompt_tokens,
                output_tokens=chunk.usage.completion_tokens,
            )
        if not chunk.choices:
            return
        if self.finish is not None:
            raise stream_truncated(self.provider, "content after the finish reason")
        choice = chunk.choices[0]
        delta = choice.delta
        if delta.content:
            self.text.append(delta.content)
        for piece in delta.tool_calls or ():
            self._add_call(self.calls.setdefault(piece.index, {}), piece)
        self.finish = choice.finish_reason

    def _add_call(self, part: dict[str, str], piece: Any) -> None:
        function = piece.function
        for key, value in (("id", piece.id), ("name", function and function.name)):
            if value and part.setdefault(key, value) != value:
                raise stream_truncated(self.provider, f"a tool call's {key} changed")
        if function is not None and function.arguments:
            part["arguments"] = part.get("arguments", "") + function.arguments

    def result(self) -> tuple[str | None, tuple[ToolCall, ...], str]:
        if self.finish is None:
            raise stream_truncated(self.provider, "it ended without a finish reason")
        calls = tuple(self._call(self.calls[index]) for index in sorted(self.calls))
        return "".join(self.text) or None, calls, self.finish

    def _call(self, part: dict[str, str]) -> ToolCall:
        if "id" not in part or "name" not in part:
            raise stream_truncated(self.provider, "a tool call without its id or name")
        arguments = part.get("arguments", "")
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise stream_truncated(self.provider, "tool-call arguments cut short")
        return ToolCall(id=part["id"], name=part["name"], arguments=arguments)


def _message_of(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message
