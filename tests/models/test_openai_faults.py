"""Each provider fault, one at a time, becomes one typed error of the OpenAI adapter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.models.fault_server import (
    Answer,
    BadRequest,
    ConnectTimeout,
    ContextLength,
    Disconnect,
    DuplicateChunks,
    ErrorBody200,
    FaultServer,
    MalformedChunk,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StallAfterHeaders,
    StreamCut,
    ToolCall,
    Unauthorized,
    always,
    http_date_in,
    in_order,
)
from tether.errors import ModelError
from tether.messages import UserMessage
from tether.models import FREE, ModelSettings, OpenAIModel

pytestmark = pytest.mark.anyio

CALL = Answer(tool_calls=[ToolCall(id="call_1", name="pay", arguments={"amount": 125, "to": "x"})])


async def ask(server: FaultServer, *, stream: bool) -> Any:
    model = OpenAIModel(
        "m", base_url=server.base_url, api_key="x", stream=stream, timeout=1.0, price=FREE
    )
    try:
        return await model.request([UserMessage(content="pay")], [], ModelSettings())
    finally:
        await model.aclose()


BOTH = [
    (RateLimited(retry_after_seconds=3), "rate_limited", True),
    (QuotaExhausted(), "quota_exhausted", False),
    (ServerError(500), "server_error", True),
    (ServerError(502, html=True), "server_error", True),
    (ServerError(503), "overloaded", True),
    (ServerError(529), "overloaded", True),
    (Unauthorized(), "auth_error", False),
    (ContextLength(), "context_too_long", False),
    (BadRequest(status=422, code=None), "bad_request", False),
    (ConnectTimeout(stall_seconds=2.0), "timeout", True),
    (Disconnect(), "connection_error", True),
    (ErrorBody200(), "server_error", True),
]
STREAM_ONLY = [
    (StallAfterHeaders(answer=CALL, after_chunks=1), "stream_truncated", True),
    (StreamCut(at="no_finish_reason", answer=CALL), "stream_truncated", True),
    (StreamCut(at="mid_tool_arguments", answer=CALL), "stream_truncated", True),
    (StreamCut(at="mid_tool_arguments", answer=CALL, abrupt=False), "stream_truncated", True),
    (MalformedChunk(answer=CALL), "stream_truncated", True),
    (DuplicateChunks(answer=CALL), "stream_truncated", True),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("fault", "error_class", "retryable"), BOTH)
async def test_http_faults(
    fault_server: FaultServer, fault: Any, error_class: str, retryable: bool, stream: bool
) -> None:
    fault_server.script = always(fault)
    with pytest.raises(ModelError) as caught:
        await ask(fault_server, stream=stream)
    assert (caught.value.error_class, caught.value.retryable) == (error_class, retryable)


@pytest.mark.parametrize(("fault", "error_class", "retryable"), STREAM_ONLY)
async def test_stream_faults_never_return_calls(
    fault_server: FaultServer, fault: Any, error_class: str, retryable: bool
) -> None:
    fault_server.script = always(fault)
    with pytest.raises(ModelError) as caught:
        await ask(fault_server, stream=True)
    assert (caught.value.error_class, caught.value.retryable) == (error_class, retryable)


async def test_retry_after_forms_reach_the_error(fault_server: FaultServer) -> None:
    fault_server.script = in_order(
        RateLimited(retry_after_seconds=7),
        RateLimited(retry_after_seconds=None, retry_after_http_date=http_date_in(30)),
    )
    for low, high in ((7.0, 7.0), (28.0, 31.0)):
        with pytest.raises(ModelError) as caught:
            await ask(fault_server, stream=False)
        assert caught.value.retry_after is not None
        assert low <= caught.value.retry_after <= high


@pytest.mark.parametrize("stream", [False, True])
async def test_a_clean_answer_has_its_call_usage_and_finish_reason(
    fault_server: FaultServer, stream: bool
) -> None:
    fault_server.script = always(CALL)
    response = await ask(fault_server, stream=stream)
    (call,) = response.tool_calls
    assert call.name == "pay" and call.id == "call_1"
    assert call.arguments.replace(" ", "") == '{"amount":125,"to":"x"}'
    assert response.finish_reason == "tool_calls" and response.usage.total_tokens > 0
    assert response.cost_usd == 0


async def test_a_stream_cut_after_the_finish_reason_keeps_the_answer_without_usage(
    fault_server: FaultServer,
) -> None:
    fault_server.script = always(StreamCut(at="before_usage", answer=CALL))
    response = await ask(fault_server, stream=True)
    assert response.tool_calls and response.finish_reason == "tool_calls"
    assert response.cost_usd is None, "usage that never arrived is unknown, not zero"
