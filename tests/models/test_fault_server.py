"""How the official ``openai`` SDK surfaces each fault of the fault server.

These tests pin the table in ``fault_server``'s docstring: the OpenAI adapter maps
exactly these SDK behaviours to tether's error classes. Every client has
``max_retries=0`` (the adapter owns retries) and a 0.5 s timeout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("openai")

import openai
from openai.types.chat import ChatCompletionChunk

from tests.models.fault_server import (
    DEFAULT_ANSWER,
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
    Usage,
    always,
    connect_blackhole,
    http_date_in,
    in_order,
    refused_url,
    tool_then_answer,
)

TIMEOUT = 0.5
MESSAGES: Any = [{"role": "user", "content": "What is 1 + 2?"}]
ADD = ToolCall(id="call_add", name="add", arguments={"a": 1, "b": 2})
TOOL_ANSWER = Answer(text=None, tool_calls=[ADD], usage=Usage(20, 10), fragment_size=4)


@contextmanager
def sdk(target: FaultServer | str, max_retries: int = 0) -> Iterator[openai.OpenAI]:
    base_url = target if isinstance(target, str) else target.base_url
    with openai.OpenAI(
        base_url=base_url, api_key="sk-test", max_retries=max_retries, timeout=TIMEOUT
    ) as client:
        yield client


def create(client: openai.OpenAI, stream: bool, **extra: Any) -> Any:
    if stream:
        extra.setdefault("stream_options", {"include_usage": True})
    return client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=stream, **extra
    )


def drain(stream: Any) -> tuple[list[ChatCompletionChunk], BaseException | None]:
    """Every chunk the SDK yields, and the exception that ended the iteration (if any)."""
    chunks: list[ChatCompletionChunk] = []
    with stream:
        try:
            # One by one: the chunks read before an error must be kept.
            for chunk in stream:
                chunks.append(chunk)  # noqa: PERF402
        except Exception as error:
            return chunks, error
    return chunks, None


def arguments(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(
        call.function.arguments or ""
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.function is not None
    )


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# -- normal answers ---------------------------------------------------------------------


def test_sdk_reads_a_tool_call_then_a_text_answer(fault_server: FaultServer) -> None:
    fault_server.script = tool_then_answer("add", {"a": 1, "b": 2}, "It is 3.")
    with sdk(fault_server) as client:
        first = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        (call,) = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.type == "function"
        assert call.function.name == "add"
        assert json.loads(call.function.arguments) == {"a": 1, "b": 2}
        history: Any = [
            *MESSAGES,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "3"},
        ]
        second = client.chat.completions.create(model="gpt-test", messages=history)
    assert second.choices[0].message.content == "It is 3."
    assert second.usage is not None
    assert second.usage.total_tokens == second.usage.prompt_tokens + second.usage.completion_tokens


def test_sdk_streams_tool_call_fragments_and_usage(fault_server: FaultServer) -> None:
    fault_server.script = always(TOOL_ANSWER)
    with sdk(fault_server) as client:
        chunks, error = drain(create(client, stream=True))
    assert error is None
    assert json.loads(arguments(chunks)) == {"a": 1, "b": 2}
    first_call = (chunks[0].choices[0].delta.tool_calls or [])[0]
    assert (first_call.index, first_call.id) == (0, "call_add")
    assert first_call.function is not None
    assert first_call.function.name == "add"
    assert finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (20, 10)


# -- HTTP status faults -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("fault", "exception", "status", "code", "type_"),
    [
        (RateLimited(2), openai.RateLimitError, 429, "rate_limit_exceeded", "rate_limit_error"),
        (QuotaExhausted(), openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
        (ServerError(500), openai.InternalServerError, 500, None, "server_error"),
        (ServerError(502), openai.InternalServerError, 502, None, "server_error"),
        (ServerError(503), openai.InternalServerError, 503, None, "server_error"),
        (ServerError(529), openai.InternalServerError, 529, None, "server_error"),
        (Unauthorized(), openai.AuthenticationError, 401, "invalid_api_key", None),
        (ContextLength(), openai.BadRequestError, 400, "context_length_exceeded", None),
        (BadRequest(), openai.BadRequestError, 400, "invalid_value", None),
        (BadRequest(403, code=None), openai.PermissionDeniedError, 403, None, None),
        (BadRequest(404, code=None), openai.NotFoundError, 404, None, None),
        (BadRequest(422), openai.UnprocessableEntityError, 422, "invalid_value", None),
    ],
)
def test_status_faults_raise_api_status_errors_from_create(
    fault_server: FaultServer,
    stream: bool,
    fault: Any,
    exception: type[openai.APIStatusError],
    status: int,
    code: str | None,
    type_: str | None,
) -> None:
    fault_server.script = always(fault)
    with sdk(fault_server) as client, pytest.raises(exception) as caught:
        create(client, stream)  # a stream fails in create(), before any chunk
    error = caught.value
    assert type(error) is exception
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == status
    assert error.response.status_code == status
    assert error.code == code
    # body is the *inner* "error" object, already unwrapped by the SDK.
    assert isinstance(error.body, dict)
    assert error.body["code"] == code
    assert set(error.body) == {"message", "type", "param", "code"}
    if type_ is not None:
        assert error.type == type_
    if isinstance(fault, ContextLength):
        assert error.param == "messages"
    assert error.request_id == f"req_fault{fault_server.requests[-1].index:06d}"


def test_rate_limit_retry_after_in_seconds(fault_server: FaultServer) -> None:
    fault_server.script = always(RateLimited(retry_after_seconds=2.5, retry_after_ms=2500))
    with sdk(fault_server) as client, pytest.raises(openai.RateLimitError) as caught:
        create(client, stream=False)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2.5"
    assert headers["retry-after-ms"] == "2500"
    assert float(headers["retry-after"]) == 2.5


def test_rate_limit_retry_after_as_http_date(fault_server: FaultServer) -> None:
    fault_server.script = always(RateLimited(None, retry_after_http_date=http_date_in(5)))
    with sdk(fault_server) as client, pytest.raises(openai.RateLimitError) as caught:
        create(client, stream=True)
    value = caught.value.response.headers["retry-after"]
    with pytest.raises(ValueError):
        float(value)
    assert value.endswith(" GMT")


def test_rate_limit_without_retry_after(fault_server: FaultServer) -> None:
    fault_server.script = always(RateLimited(None))
    with sdk(fault_server) as client, pytest.raises(openai.RateLimitError) as caught:
        create(client, stream=False)
    assert "retry-after" not in caught.value.response.headers


def test_quota_is_told_apart_from_rate_limits_by_code_only(fault_server: FaultServer) -> None:
    fault_server.script = in_order(RateLimited(1), QuotaExhausted())
    with sdk(fault_server) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            create(client, stream=False)
        with pytest.raises(openai.RateLimitError) as quota:
            create(client, stream=False)
    assert type(limited.value) is type(quota.value)
    assert (limited.value.code, quota.value.code) == ("rate_limit_exceeded", "insufficient_quota")


def test_gateway_html_error_has_a_string_body(fault_server: FaultServer) -> None:
    fault_server.script = always(ServerError(502, html=True))
    with sdk(fault_server) as client, pytest.raises(openai.InternalServerError) as caught:
        create(client, stream=False)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, str)
    assert caught.value.code is None


def test_the_sdk_would_honour_retry_after_itself(fault_server: FaultServer) -> None:
    """Why the adapter passes max_retries=0: otherwise the SDK retries on its own."""
    fault_server.script = in_order(RateLimited(0.3), DEFAULT_ANSWER)
    with sdk(fault_server, max_retries=1) as client:
        answer = create(client, stream=False)
    assert answer.choices[0].message.content == DEFAULT_ANSWER.text
    first, second = fault_server.requests
    assert first.responded is not None
    assert second.arrived - first.responded >= 0.3
    assert second.headers["x-stainless-retry-count"] == "1"


# -- transport faults -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_no_response_at_all_is_a_timeout(fault_server: FaultServer, stream: bool) -> None:
    fault_server.script = always(ConnectTimeout())
    started = time.monotonic()
    with sdk(fault_server) as client, pytest.raises(openai.APITimeoutError) as caught:
        create(client, stream)
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    assert isinstance(caught.value, openai.APIConnectionError)  # a subclass: test it first
    assert type(caught.value.__cause__).__name__ == "ReadTimeout"
    assert caught.value.body is None
    assert not hasattr(caught.value, "status_code")


@pytest.mark.skipif(sys.platform != "linux", reason="SYN drops on a full accept queue")
def test_a_real_connect_timeout_is_the_same_exception() -> None:
    with (
        connect_blackhole() as url,
        sdk(url) as client,
        pytest.raises(openai.APITimeoutError) as caught,
    ):
        create(client, stream=False)
    assert type(caught.value.__cause__).__name__ == "ConnectTimeout"


def test_connection_refused_is_a_connection_error() -> None:
    with sdk(refused_url()) as client, pytest.raises(openai.APIConnectionError) as caught:
        create(client, stream=False)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert type(caught.value.__cause__).__name__ == "ConnectError"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_disconnect_before_a_byte_is_a_connection_error(
    fault_server: FaultServer, stream: bool
) -> None:
    fault_server.script = always(Disconnect())
    with sdk(fault_server) as client, pytest.raises(openai.APIConnectionError) as caught:
        create(client, stream)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"


def test_stall_after_headers_without_stream_times_out_in_create(fault_server: FaultServer) -> None:
    fault_server.script = always(StallAfterHeaders())
    with sdk(fault_server) as client, pytest.raises(openai.APITimeoutError):
        create(client, stream=False)


@pytest.mark.parametrize("after_chunks", [0, 2])
def test_stall_after_headers_in_a_stream_times_out_while_iterating(
    fault_server: FaultServer, after_chunks: int
) -> None:
    fault_server.script = always(StallAfterHeaders(after_chunks=after_chunks))
    with sdk(fault_server) as client:
        stream = create(client, stream=True)  # returns once the headers arrived
        assert isinstance(stream, openai.Stream)
        chunks, error = drain(stream)
    assert len(chunks) == after_chunks
    assert isinstance(error, openai.APITimeoutError)
    assert type(error.__cause__).__name__ == "ReadTimeout"


# -- stream cuts ------------------------------------------------------------------------


def cut(server: FaultServer, at: Any, abrupt: bool) -> tuple[list[ChatCompletionChunk], Any]:
    server.script = always(StreamCut(at=at, abrupt=abrupt, answer=TOOL_ANSWER))
    with sdk(server) as client:
        return drain(create(client, stream=True))


@pytest.mark.parametrize("abrupt", [True, False], ids=["dropped", "clean"])
def test_cut_before_finish_reason(fault_server: FaultServer, abrupt: bool) -> None:
    chunks, error = cut(fault_server, "no_finish_reason", abrupt)
    assert finish_reasons(chunks) == []
    # The arguments are complete and parse: only the missing finish_reason says "cut".
    assert json.loads(arguments(chunks)) == {"a": 1, "b": 2}
    assert all(c.usage is None for c in chunks)
    if abrupt:
        assert type(error) is openai.APIConnectionError
        assert type(error.__cause__).__name__ == "RemoteProtocolError"
    else:
        assert error is None  # the SDK ends the iteration silently


@pytest.mark.parametrize("abrupt", [True, False], ids=["dropped", "clean"])
def test_cut_inside_tool_arguments(fault_server: FaultServer, abrupt: bool) -> None:
    chunks, error = cut(fault_server, "mid_tool_arguments", abrupt)
    partial = arguments(chunks)
    assert partial
    assert '{"a":1,"b":2}'.startswith(partial)
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial)
    assert finish_reasons(chunks) == []
    assert (type(error) is openai.APIConnectionError) if abrupt else (error is None)


@pytest.mark.parametrize("abrupt", [True, False], ids=["dropped", "clean"])
def test_cut_before_the_usage_chunk(fault_server: FaultServer, abrupt: bool) -> None:
    chunks, error = cut(fault_server, "before_usage", abrupt)
    assert finish_reasons(chunks) == ["tool_calls"]
    assert json.loads(arguments(chunks)) == {"a": 1, "b": 2}
    assert all(c.usage is None for c in chunks)
    assert (type(error) is openai.APIConnectionError) if abrupt else (error is None)


@pytest.mark.parametrize("abrupt", [True, False], ids=["dropped", "clean"])
def test_missing_done_only(fault_server: FaultServer, abrupt: bool) -> None:
    chunks, error = cut(fault_server, "no_done", abrupt)
    assert finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 30
    # Without [DONE] a clean end looks exactly like a complete stream to the caller.
    assert (type(error) is openai.APIConnectionError) if abrupt else (error is None)


def test_cut_without_stream_is_a_connection_error(fault_server: FaultServer) -> None:
    fault_server.script = always(StreamCut())
    with sdk(fault_server) as client, pytest.raises(openai.APIConnectionError) as caught:
        create(client, stream=False)
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"


def test_the_stream_helper_does_not_notice_a_clean_cut(fault_server: FaultServer) -> None:
    """``client.chat.completions.stream`` accumulates a cut stream without complaint."""
    fault_server.script = always(StreamCut(at="mid_tool_arguments", abrupt=False))
    with (
        sdk(fault_server) as client,
        client.chat.completions.stream(model="gpt-test", messages=MESSAGES) as stream,
    ):
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason is None
    (call,) = choice.message.tool_calls or []
    assert call.function.parsed_arguments is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


# -- malformed, duplicated and error-bodied 200s ----------------------------------------


def test_malformed_chunk_raises_a_json_error_not_an_openai_error(
    fault_server: FaultServer,
) -> None:
    fault_server.script = always(MalformedChunk(after_chunks=1))
    with sdk(fault_server) as client:
        chunks, error = drain(create(client, stream=True))
    assert len(chunks) == 1
    assert type(error) is json.JSONDecodeError
    assert not isinstance(error, openai.OpenAIError)


def test_malformed_json_body_raises_a_json_error(fault_server: FaultServer) -> None:
    fault_server.script = always(MalformedChunk())
    with sdk(fault_server) as client, pytest.raises(json.JSONDecodeError):
        create(client, stream=False)


def test_duplicate_chunks_are_yielded_twice(fault_server: FaultServer) -> None:
    fault_server.script = always(DuplicateChunks(answer=TOOL_ANSWER))
    with sdk(fault_server) as client:
        chunks, error = drain(create(client, stream=True))
    assert error is None
    assert [c.model_dump() for c in chunks[::2]] == [c.model_dump() for c in chunks[1::2]]
    assert finish_reasons(chunks) == ["tool_calls", "tool_calls"]
    starts = [
        call.id
        for c in chunks
        if c.choices
        for call in c.choices[0].delta.tool_calls or []
        if call.id is not None
    ]
    assert starts == ["call_add", "call_add"]  # the same index started twice
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments(chunks))
    assert sum(1 for c in chunks if c.usage is not None) == 2


def test_error_body_200_without_stream_returns_an_empty_completion(
    fault_server: FaultServer,
) -> None:
    fault_server.script = always(ErrorBody200(code="boom"))
    with sdk(fault_server) as client:
        completion = create(client, stream=False)  # no exception
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices is None  # typed as a list, but not validated
    assert completion.id is None
    assert completion.model_extra is not None
    assert completion.model_extra["error"]["code"] == "boom"
    assert completion.model_extra["error"]["type"] == "server_error"


def test_error_event_in_a_stream_raises_a_bare_api_error(fault_server: FaultServer) -> None:
    fault_server.script = always(ErrorBody200(code="boom"))
    with sdk(fault_server) as client:
        chunks, error = drain(create(client, stream=True))
    assert chunks == []
    assert type(error) is openai.APIError
    assert not isinstance(error, openai.APIStatusError | openai.APIConnectionError)
    assert not hasattr(error, "status_code")
    assert error.code == "boom"
    assert error.type == "server_error"
    assert isinstance(error.body, dict)
    assert error.body["message"] == error.message


def test_error_event_after_chunks(fault_server: FaultServer) -> None:
    fault_server.script = always(ErrorBody200(code="boom", after_chunks=2))
    with sdk(fault_server) as client:
        chunks, error = drain(create(client, stream=True))
    assert len(chunks) == 2
    assert type(error) is openai.APIError
    assert error.code == "boom"


# -- async client, on its own event loop ------------------------------------------------


@pytest.mark.anyio
async def test_async_client_sees_the_same_faults(fault_server: FaultServer) -> None:
    fault_server.script = in_order(
        RateLimited(1), StreamCut(at="mid_tool_arguments", answer=TOOL_ANSWER), TOOL_ANSWER
    )
    async with openai.AsyncOpenAI(
        base_url=fault_server.base_url, api_key="sk-test", max_retries=0, timeout=TIMEOUT
    ) as client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
        chunks: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                chunks.append(chunk)  # noqa: PERF401 - keep the chunks read before the error
        assert chunks
        assert finish_reasons(chunks) == []
        answer = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert [r.index for r in fault_server.requests] == [0, 1, 2]
