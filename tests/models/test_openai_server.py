"""The OpenAI adapter against a real OpenAI-compatible server: ``llama_cpp.server``.

The server runs SmolLM2-135M (see the ``llama_server`` fixture), so nothing here is
mocked: requests, answers, server-sent events and the journal are real. At temperature
0 the answers are deterministic, which the assertions rely on only where the model's
choice is stable (a tool call for a sum when the system prompt asks for one).

What ``llama_cpp.server`` 0.3.36 does and the tests pin, so an upgrade that changes it
is noticed:

- it uses the tools only when ``tool_choice`` is sent (the adapter sends ``"auto"``);
- it ignores ``stream_options.include_usage``: a streamed answer has no usage, so the
  adapter reports 0 tokens and an unknown cost;
- with ``tool_choice="auto"`` it cannot stream a tool call: the stream ends at once
  without a finish reason, which the adapter reports as ``stream_truncated``;
- a message chosen under ``tool_choice="auto"`` comes back empty (its grammar allows
  only a function name or the end), so an agent with tools gets no final text from it;
- it repeats a call's id and name in every delta of a streamed tool call;
- it answers HTTP 500 to an assistant turn whose ``content`` is null or missing (the
  adapter sends ``""``);
- its prompt template drops ``tool`` messages, so the model never sees a tool's result
  and SmolLM2 calls the same tool again (tether answers the repeat from the first
  result; the run ends at its step limit).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tether import (
    Agent,
    ModelError,
    ModelResponded,
    RunLimits,
    RunStatus,
    SystemMessage,
    Tether,
    ToolDefinition,
    UserMessage,
    tool,
)
from tether.models import FREE, ModelSettings, OpenAIModel, ResilientModel

pytestmark = [pytest.mark.local_model, pytest.mark.anyio]

SETTINGS = ModelSettings(max_output_tokens=24, temperature=0.0)
CALCULATOR = SystemMessage(content="You are a calculator. Use the add function for sums.")
ADD = ToolDefinition(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)
SUM = [CALCULATOR, UserMessage(content="Add 17 and 25.")]
PLAIN = [UserMessage(content="Name three colours.")]


@pytest.fixture
async def whole(llama_server: str) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel(model="smollm2", base_url=llama_server, api_key="x")
    yield model
    await model.client.close()


@pytest.fixture
async def streamed(llama_server: str) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel(model="smollm2", base_url=llama_server, api_key="x", stream=True)
    yield model
    await model.client.close()


class ForceTool(httpx.AsyncBaseTransport):
    """Sends every request with ``tool_choice`` naming one tool, like a gateway would.

    ``OpenAIModel`` always sends ``"auto"``, and ``llama_cpp.server`` streams a tool call
    only when the tool is named, so this is how a real streamed tool call is obtained.
    """

    def __init__(self, name: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.name = name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        body["tool_choice"] = {"type": "function", "function": {"name": self.name}}
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        forced = httpx.Request(
            request.method, request.url, headers=headers, json=body, extensions=request.extensions
        )
        return await self.inner.handle_async_request(forced)

    async def aclose(self) -> None:
        await self.inner.aclose()


def forced(base_url: str, *, stream: bool) -> OpenAIModel:
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="x",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=ForceTool("add"), timeout=60),
    )
    return OpenAIModel(model="smollm2", base_url=base_url, client=client, stream=stream)


def arguments_of(response: Any) -> dict[str, Any]:
    """The one ``add`` call's arguments, parsed: integers ``a`` and ``b``."""
    assert len(response.tool_calls) == 1, response
    call = response.tool_calls[0]
    assert call.name == "add" and call.id
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict) and set(arguments) == {"a", "b"}, arguments
    assert all(isinstance(v, int) for v in arguments.values()), arguments
    return arguments


async def test_plain_answer(whole: OpenAIModel) -> None:
    response = await whole.request(PLAIN, [], SETTINGS)
    assert response.text and response.text.strip()
    assert response.tool_calls == ()
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.output_tokens <= 24  # SETTINGS.max_output_tokens
    assert response.finish_reason in ("stop", "length")
    assert response.model_name == "openai:smollm2"
    assert response.cost_usd is None  # self-hosted and no price given: unknown


async def test_plain_answer_with_a_price_costs_it(llama_server: str) -> None:
    model = OpenAIModel(model="smollm2", base_url=llama_server, api_key="x", price=FREE)
    try:
        response = await model.request(PLAIN, [], SETTINGS)
    finally:
        await model.client.close()
    assert response.usage.total_tokens > 0
    assert response.cost_usd == Decimal(0)


async def test_streamed_plain_answer_equals_the_whole_one(
    whole: OpenAIModel, streamed: OpenAIModel
) -> None:
    expected = await whole.request(PLAIN, [], SETTINGS)
    response = await streamed.request(PLAIN, [], SETTINGS)
    assert response.text == expected.text and response.text
    assert response.finish_reason == expected.finish_reason
    assert response.tool_calls == ()
    # The server ignores include_usage: no usage, so no cost even with a price.
    assert response.usage.total_tokens == 0
    assert response.cost_usd is None


async def test_tool_call(whole: OpenAIModel) -> None:
    response = await whole.request(SUM, [ADD], SETTINGS)
    arguments_of(response)  # {"a": 17, "b": 25} here; only the shape is guaranteed
    assert response.text is None
    assert response.finish_reason == "tool_calls"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


async def test_streamed_tool_call_equals_the_whole_one(llama_server: str) -> None:
    whole, streamed = forced(llama_server, stream=False), forced(llama_server, stream=True)
    try:
        expected = await whole.request(SUM, [ADD], SETTINGS)
        response = await streamed.request(SUM, [ADD], SETTINGS)
    finally:
        await whole.client.close()
        await streamed.client.close()
    # The server repeats the id and name in every delta; they are taken once.
    assert arguments_of(response) == arguments_of(expected)
    assert response.tool_calls[0].id.startswith("call_")
    assert response.finish_reason == expected.finish_reason == "tool_calls"
    assert response.text is None


async def test_streamed_auto_tool_call_is_refused_as_truncated(streamed: OpenAIModel) -> None:
    # The same request as test_tool_call, streamed: the server gives up on it (it does not
    # stream automatic tool calls) and ends the stream without a finish reason.
    with pytest.raises(ModelError) as caught:
        await streamed.request(SUM, [ADD], SETTINGS)
    assert caught.value.error_class == "stream_truncated"
    assert caught.value.retryable


async def test_agent_run_through_the_server(llama_server: str) -> None:
    executed: list[tuple[int, int]] = []

    @tool(risk="read")
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: First addend.
            b: Second addend.
        """
        executed.append((a, b))
        return a + b

    model = OpenAIModel(model="smollm2", base_url=llama_server, api_key="x")
    agent = Agent(
        name="calculator",
        model=ResilientModel(model),
        instructions=CALCULATOR.content,
        tools=[add],
        limits=RunLimits(max_steps=4),
        model_settings=SETTINGS,
    )
    runtime = Tether(store="memory://")
    try:
        result = await runtime.run(agent, "Add 17 and 25.")
        journal = await runtime.events(result.run_id)
    finally:
        await runtime.close()
        await model.client.close()

    assert result.status in (RunStatus.COMPLETED, RunStatus.MAX_STEPS, RunStatus.FAILED), result
    if result.status is RunStatus.FAILED:
        assert result.error is not None
        assert result.error.error_class in ("loop_detected", "output_invalid"), result.error
    # Every request was accepted (an assistant turn with calls and no text once got HTTP
    # 500 for its null content, which retries turned into an open breaker).
    assert not [e for e in journal if e.kind == "model_failed"], journal
    responded = [e for e in journal if isinstance(e, ModelResponded)]
    assert responded, journal
    assert {e.response.model_name for e in responded} == {"openai:smollm2"}
    # The first answer is the call (deterministic at temperature 0), and it ran.
    assert responded[0].response.tool_calls[0].name == "add"
    assert executed
    assert result.usage.total_tokens == sum(e.response.usage.total_tokens for e in responded)
