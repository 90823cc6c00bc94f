"""The Anthropic adapter against an HTTP transport fake (no network).

Request and response bodies follow Anthropic's Messages API reference: ``tool_use`` blocks
with object ``input``, ``tool_result`` blocks first in the next user message, ``system``
as a top-level parameter, error bodies ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest

from tether.errors import ModelError
from tether.messages import (
    AssistantMessage,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from tether.models import FREE, AnthropicModel, ModelSettings

pytestmark = pytest.mark.anyio

ADD = ToolDefinition(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)


def fake(handler: Callable[[dict[str, Any]], httpx2.Response]) -> tuple[AnthropicModel, list]:
    seen: list[dict[str, Any]] = []

    def respond(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        body = json.loads(request.content)
        seen.append(body)
        return handler(body)

    client = anthropic.AsyncAnthropic(
        api_key="test-key",
        base_url="http://anthropic.test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(respond)),
    )
    return AnthropicModel("claude-sonnet-5", client=client), seen


def message(content: list[dict[str, Any]], stop: str, **usage: int) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 20, **usage},
        },
    )


def error(status: int, kind: str, text: str, **headers: str) -> httpx2.Response:
    body = {"type": "error", "error": {"type": kind, "message": text}}
    return httpx2.Response(status, json=body, headers=headers)


async def test_a_tool_call_and_its_result_round_trip() -> None:
    model, seen = fake(
        lambda body: message(
            [
                {"type": "text", "text": "Let me add."},
                {"type": "tool_use", "id": "toolu_01", "name": "add", "input": {"a": 2, "b": 3}},
            ],
            "tool_use",
        )
    )
    response = await model.request(
        [SystemMessage(content="Be brief."), UserMessage(content="2+3?")],
        [ADD],
        ModelSettings(max_output_tokens=50, temperature=0.0),
    )
    assert response.text == "Let me add."
    assert response.tool_calls == (ToolCall(id="toolu_01", name="add", arguments='{"a":2,"b":3}'),)
    assert response.finish_reason == "tool_use" and response.model_name.startswith("anthropic:")
    assert response.usage.input_tokens == 100 and response.usage.output_tokens == 20
    assert response.cost_usd is not None and response.cost_usd > 0
    (sent,) = seen
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 50
    assert "temperature" not in sent, "the Messages API has no sampling parameters"
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "2+3?"}]}]
    assert sent["tools"] == [
        {"name": "add", "description": "Add two integers.", "input_schema": ADD.parameters}
    ]


async def test_history_alternates_roles_with_tool_results_first() -> None:
    model, seen = fake(lambda body: message([{"type": "text", "text": "5"}], "end_turn"))
    history = [
        UserMessage(content="2+3? and 1+1?"),
        AssistantMessage(
            tool_calls=(
                ToolCall(id="toolu_1", name="add", arguments='{"a":2,"b":3}'),
                ToolCall(id="toolu_2", name="add", arguments="{not json"),
            )
        ),
        ToolResultMessage(call_id="toolu_1", name="add", content="5"),
        ToolResultMessage(call_id="toolu_2", name="add", content="bad args", is_error=True),
        UserMessage(content="Now answer."),
    ]
    response = await model.request(history, [ADD], ModelSettings())
    assert response.text == "5" and response.tool_calls == ()
    sent = seen[0]["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}},
        {
            "type": "tool_use",
            "id": "toolu_2",
            "name": "add",
            "input": {"invalid_arguments": "{not json"},
        },
    ]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "bad args", "is_error": True},
        {"type": "text", "text": "Now answer."},
    ]
    assert "system" not in seen[0]


async def test_cached_input_counts_as_input() -> None:
    model, _ = fake(
        lambda body: message(
            [{"type": "text", "text": "hi"}],
            "end_turn",
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=50,
        )
    )
    response = await model.request([UserMessage(content="hi")], [], ModelSettings())
    assert response.usage.input_tokens == 1150


async def test_an_explicit_price_wins_and_an_unknown_model_has_no_price() -> None:
    model, _ = fake(lambda body: message([{"type": "text", "text": "hi"}], "end_turn"))
    model.price = FREE
    assert (await model.request([UserMessage(content="x")], [], ModelSettings())).cost_usd == 0
    model.price = None
    model.model = "claude-made-up-9"
    response = await model.request([UserMessage(content="x")], [], ModelSettings())
    assert response.cost_usd is None, "an unknown price is unknown, never zero"
    assert Decimal(0) != response.cost_usd


@pytest.mark.parametrize(
    ("reply", "error_class", "retryable", "retry_after"),
    [
        (error(429, "rate_limit_error", "Number of requests exceeded", **{"retry-after": "4"}),
         "rate_limited", True, 4.0),
        (error(529, "overloaded_error", "Overloaded"), "overloaded", True, None),
        (error(500, "api_error", "Internal server error"), "server_error", True, None),
        (error(401, "authentication_error", "invalid x-api-key"), "auth_error", False, None),
        (error(403, "permission_error", "no access"), "auth_error", False, None),
        (error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
         "context_too_long", False, None),
        (error(400, "invalid_request_error", "Your credit balance is too low"),
         "quota_exhausted", False, None),
        (error(400, "invalid_request_error", "messages.0.content: Field required"),
         "bad_request", False, None),
        (error(404, "not_found_error", "model: claude-x"), "bad_request", False, None),
    ],
)  # fmt: skip
async def test_errors_map_to_classes(
    reply: httpx2.Response, error_class: str, retryable: bool, retry_after: float | None
) -> None:
    model, _ = fake(lambda body: reply)
    with pytest.raises(ModelError) as caught:
        await model.request([UserMessage(content="x")], [], ModelSettings())
    error_ = caught.value
    assert (error_.error_class, error_.retryable, error_.retry_after) == (
        error_class,
        retryable,
        retry_after,
    )
    assert error_.status_code == reply.status_code


async def test_a_connection_failure_is_retryable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url="http://anthropic.test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(refuse)),
    )
    with pytest.raises(ModelError) as caught:
        await AnthropicModel("claude-sonnet-5", client=client).request(
            [UserMessage(content="x")], [], ModelSettings()
        )
    assert caught.value.error_class == "connection_error" and caught.value.retryable


def test_a_missing_key_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.errors import ConfigurationError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-5")
