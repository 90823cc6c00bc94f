"""The fault server's wire format and bookkeeping, checked with the stdlib HTTP client only."""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.models.fault_server import (
    DEFAULT_ANSWER,
    Answer,
    ConnectTimeout,
    ContextLength,
    Disconnect,
    DuplicateChunks,
    ErrorBody200,
    Fault,
    FaultPlan,
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
    http_date_in,
    in_order,
    tool_then_answer,
)

USER = [{"role": "user", "content": "What is 1 + 2?"}]
ADD = ToolCall(id="call_add", name="add", arguments={"a": 1, "b": 2})


@contextmanager
def connection(server: FaultServer, timeout: float = 2.0) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        yield conn
    finally:
        conn.close()


def post(
    server: FaultServer, body: dict[str, Any] | bytes, path: str = "/v1/chat/completions"
) -> tuple[int, dict[str, str], bytes]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    with connection(server) as conn:
        conn.request("POST", path, payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()


def request(stream: bool = False, include_usage: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-test", "messages": USER, **extra}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def sse_events(raw: bytes) -> list[str]:
    events = raw.decode().split("\n\n")
    assert events[-1] == "", "the stream must end with a blank line"
    assert all(event.startswith("data: ") for event in events[:-1])
    return [event.removeprefix("data: ") for event in events[:-1]]


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


# -- normal answers ---------------------------------------------------------------------


def test_non_streaming_answer_has_the_chat_completion_shape(fault_server: FaultServer) -> None:
    fault_server.script = always(Answer(text="Let me add.", tool_calls=[ADD], usage=Usage(11, 7)))
    status, headers, raw = post(fault_server, request())
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    }
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-test"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Let me add."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_add",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a":1,"b":2}'},
        }
    ]
    assert body["usage"]["prompt_tokens"] == 11
    assert body["usage"]["completion_tokens"] == 7
    assert body["usage"]["total_tokens"] == 18
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_text_only_answer_has_no_tool_calls_key(fault_server: FaultServer) -> None:
    _, _, raw = post(fault_server, request())
    message = json.loads(raw)["choices"][0]["message"]
    assert "tool_calls" not in message
    assert message["content"] == DEFAULT_ANSWER.text
    assert json.loads(raw)["choices"][0]["finish_reason"] == "stop"


def test_stream_with_usage_follows_the_chunk_protocol(fault_server: FaultServer) -> None:
    answer = Answer(
        tool_calls=[ADD, ToolCall("call_2", "add", '{"a": 10, "b": 20}')], fragment_size=4
    )
    fault_server.script = always(answer)
    status, headers, raw = post(fault_server, request(stream=True, include_usage=True))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    chunks = chunks_of(raw)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["model"] == "gpt-test" for c in chunks)
    *choice_chunks, usage_chunk = chunks
    assert all(c["usage"] is None for c in choice_chunks)
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["total_tokens"] > 0

    deltas = [c["choices"][0]["delta"] for c in choice_chunks]
    finishes = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    assert finishes[-1] == "tool_calls"
    assert deltas[-1] == {}
    # The first delta carries the role together with the first call's id and name.
    assert deltas[0]["role"] == "assistant"
    assert deltas[0]["content"] is None
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas[:-1]:
        (fragment,) = delta["tool_calls"]
        index = fragment["index"]
        if "id" in fragment:
            assert index not in calls
            assert fragment["type"] == "function"
            assert fragment["function"]["arguments"] == ""
            calls[index] = {"id": fragment["id"], "name": fragment["function"]["name"], "args": ""}
        else:
            assert set(fragment) == {"index", "function"}
            calls[index]["args"] += fragment["function"]["arguments"]
    assert calls == {
        0: {"id": "call_add", "name": "add", "args": '{"a":1,"b":2}'},
        1: {"id": "call_2", "name": "add", "args": '{"a": 10, "b": 20}'},
    }


def test_text_stream_without_usage(fault_server: FaultServer) -> None:
    _, _, raw = post(fault_server, request(stream=True))
    chunks = chunks_of(raw)
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(d.get("content", "") for d in deltas) == DEFAULT_ANSWER.text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# -- scripts ----------------------------------------------------------------------------


def test_tool_then_answer_follows_the_last_message(fault_server: FaultServer) -> None:
    fault_server.script = tool_then_answer("add", {"a": 1, "b": 2}, "It is 3.")
    _, _, raw = post(fault_server, request())
    message = json.loads(raw)["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert call["id"] == "call_0_0"
    assert call["function"] == {"name": "add", "arguments": '{"a":1,"b":2}'}
    history = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "3"},
    ]
    _, _, raw = post(fault_server, {"model": "m", "messages": history})
    answer = json.loads(raw)["choices"][0]
    assert answer["message"]["content"] == "It is 3."
    assert answer["finish_reason"] == "stop"


def test_in_order_repeats_the_last_reply(fault_server: FaultServer) -> None:
    fault_server.script = in_order(ServerError(500), ServerError(503), DEFAULT_ANSWER)
    statuses = [post(fault_server, request())[0] for _ in range(4)]
    assert statuses == [500, 503, 200, 200]


def test_a_failing_script_becomes_a_500_and_is_reported() -> None:
    def broken(request: dict[str, Any], index: int) -> Answer:
        raise RuntimeError("script bug")

    with FaultServer(broken) as server:
        status, _, _ = post(server, request())
    assert status == 500
    assert len(server.errors) == 1
    assert "script bug" in server.errors[0]


# -- HTTP faults ------------------------------------------------------------------------


def test_rate_limited_sends_retry_after_seconds(fault_server: FaultServer) -> None:
    fault_server.script = always(RateLimited(retry_after_seconds=2, retry_after_ms=2000))
    status, headers, raw = post(fault_server, request())
    assert status == 429
    assert headers["retry-after"] == "2"
    assert headers["retry-after-ms"] == "2000"
    error = json.loads(raw)["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"


def test_rate_limited_sends_retry_after_as_an_http_date(fault_server: FaultServer) -> None:
    fault_server.script = always(RateLimited(None, retry_after_http_date=http_date_in(3)))
    before = datetime.now(UTC)
    _, headers, _ = post(fault_server, request())
    assert headers["retry-after"].endswith(" GMT")
    wait = (email.utils.parsedate_to_datetime(headers["retry-after"]) - before).total_seconds()
    assert 3 <= wait <= 4.5


def test_fractional_retry_after_and_none(fault_server: FaultServer) -> None:
    fault_server.script = in_order(RateLimited(0.25), RateLimited(None))
    assert post(fault_server, request())[1]["retry-after"] == "0.25"
    assert "retry-after" not in post(fault_server, request())[1]


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (QuotaExhausted(), 429, "insufficient_quota"),
        (Unauthorized(), 401, "invalid_api_key"),
        (ContextLength(), 400, "context_length_exceeded"),
        (ServerError(500), 500, None),
        (ServerError(503), 503, None),
        (ServerError(529), 529, None),
    ],
)
def test_error_statuses_have_an_openai_error_body(
    fault_server: FaultServer, fault: Any, status: int, code: str | None
) -> None:
    fault_server.script = always(fault)
    got, headers, raw = post(fault_server, request(stream=True))
    assert got == status
    assert headers["Content-Type"] == "application/json"
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def test_server_error_must_be_5xx() -> None:
    with pytest.raises(ValueError, match="5xx"):
        ServerError(429)


def test_html_gateway_error(fault_server: FaultServer) -> None:
    fault_server.script = always(ServerError(502, html=True))
    status, headers, raw = post(fault_server, request())
    assert status == 502
    assert headers["Content-Type"] == "text/html"
    assert raw.startswith(b"<html>")


def test_error_body_with_status_200(fault_server: FaultServer) -> None:
    fault_server.script = always(ErrorBody200(code="boom"))
    status, _, raw = post(fault_server, request())
    assert status == 200
    assert json.loads(raw)["error"]["code"] == "boom"
    status, _, raw = post(fault_server, request(stream=True))
    assert status == 200
    (event,) = sse_events(raw)
    assert json.loads(event)["error"]["code"] == "boom"


def test_bad_json_and_unknown_paths(fault_server: FaultServer) -> None:
    status, _, raw = post(fault_server, b"{not json")
    assert status == 400
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert post(fault_server, request(), path="/v1/embeddings")[0] == 404
    assert [r.status for r in fault_server.requests] == [400]


# -- transport faults -------------------------------------------------------------------


def test_connect_timeout_sends_nothing(fault_server: FaultServer) -> None:
    fault_server.script = always(ConnectTimeout())
    with connection(fault_server, timeout=0.3) as conn:
        conn.request("POST", "/v1/chat/completions", json.dumps(request()).encode())
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.getresponse()
    assert time.monotonic() - started >= 0.25
    (record,) = fault_server.requests
    assert record.status is None
    assert record.responded is None


def test_disconnect_closes_without_a_byte(fault_server: FaultServer) -> None:
    fault_server.script = always(Disconnect())
    with pytest.raises(http.client.RemoteDisconnected):
        post(fault_server, request())


def test_stall_after_headers_sends_the_head_then_nothing(fault_server: FaultServer) -> None:
    fault_server.script = always(StallAfterHeaders(after_chunks=1))
    with connection(fault_server, timeout=0.3) as conn:
        conn.request("POST", "/v1/chat/completions", json.dumps(request(stream=True)).encode())
        response = conn.getresponse()
        assert response.status == 200
        first = response.readline()
        assert first.startswith(b"data: {")
        response.readline()
        with pytest.raises(TimeoutError):
            response.readline()


def raw_stream(server: FaultServer, body: dict[str, Any]) -> tuple[bytes, bool]:
    """Read a chunked body by hand; say whether it ended with the terminating chunk."""
    with connection(server) as conn:
        conn.request("POST", "/v1/chat/completions", json.dumps(body).encode())
        response = conn.getresponse()
        try:
            return response.read(), True
        except http.client.IncompleteRead as cut:
            return cut.partial, False


def test_stream_cuts(fault_server: FaultServer) -> None:
    answer = Answer(text="Checking.", tool_calls=[ADD], usage=Usage(5, 5))
    body = request(stream=True, include_usage=True)

    def cut(at: Any, abrupt: bool = True) -> tuple[list[str], bool]:
        fault_server.script = always(StreamCut(at=at, abrupt=abrupt, answer=answer))
        raw, complete = raw_stream(fault_server, body)
        return sse_events(raw), complete

    events, complete = cut("no_finish_reason")
    assert not complete
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    args = "".join(
        json.loads(e)["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for e in events
        if "tool_calls" in e
    )
    assert json.loads(args) == {"a": 1, "b": 2}, "arguments are complete, only the finish is cut"

    events, complete = cut("mid_tool_arguments")
    args = "".join(
        json.loads(e)["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for e in events
        if "tool_calls" in e
    )
    assert args
    assert '{"a":1,"b":2}'.startswith(args)
    assert args != '{"a":1,"b":2}'

    events, complete = cut("before_usage", abrupt=False)
    assert complete
    assert json.loads(events[-1])["choices"][0]["finish_reason"] == "tool_calls"

    events, complete = cut("no_done")
    assert not complete
    assert json.loads(events[-1])["usage"]["total_tokens"] == 10
    assert "[DONE]" not in events


def test_mid_tool_arguments_cut_adds_a_call_to_text_answers(fault_server: FaultServer) -> None:
    fault_server.script = always(StreamCut(at="mid_tool_arguments", answer=Answer(text="hi")))
    raw, _ = raw_stream(fault_server, request(stream=True))
    deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(raw)]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "lookup"
    assert all("content" not in d or d["content"] is None for d in deltas)


def test_malformed_and_duplicate_chunks(fault_server: FaultServer) -> None:
    fault_server.script = always(MalformedChunk(after_chunks=2))
    events = sse_events(raw_stream(fault_server, request(stream=True))[0])
    assert events[-1] == "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[2])
    good = [json.loads(e) for i, e in enumerate(events[:-1]) if i != 2]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in good) == DEFAULT_ANSWER.text

    fault_server.script = always(DEFAULT_ANSWER)
    plain = chunks_of(post(fault_server, request(stream=True))[2])
    fault_server.script = always(DuplicateChunks())
    doubled = sse_events(raw_stream(fault_server, request(stream=True))[0])
    assert doubled[-1] == "[DONE]"
    assert [json.loads(e)["choices"] for e in doubled[:-1:2]] == [c["choices"] for c in plain]
    assert doubled[:-1:2] == doubled[1:-1:2]


# -- the request log, outage and fault plans --------------------------------------------


def test_request_log_records_arrival_body_and_what_was_served(fault_server: FaultServer) -> None:
    fault_server.script = in_order(RateLimited(0.1), DEFAULT_ANSWER)
    before = time.monotonic()
    post(fault_server, request())
    post(fault_server, request(stream=True, include_usage=True))
    first, second = fault_server.wait_for_requests(2)
    assert [first.index, second.index] == [0, 1]
    assert before <= first.arrived <= second.arrived <= time.monotonic()
    assert first.responded is not None
    assert first.arrived <= first.responded <= second.arrived
    assert first.body == request()
    assert first.served == RateLimited(0.1)
    assert first.status == 429
    assert (first.stream, second.stream, second.include_usage) == (False, True, True)
    assert second.served == DEFAULT_ANSWER
    assert first.headers["Content-Type"] == "application/json"
    fault_server.reset()
    assert len(fault_server) == 0
    post(fault_server, request())
    assert fault_server.requests[0].index == 0


def test_wait_for_requests_times_out(fault_server: FaultServer) -> None:
    with pytest.raises(TimeoutError):
        fault_server.wait_for_requests(1, timeout=0.05)


def test_outage_fails_every_request_without_calling_the_script(fault_server: FaultServer) -> None:
    calls: list[int] = []

    def script(request: dict[str, Any], index: int) -> Answer:
        calls.append(index)
        return DEFAULT_ANSWER

    fault_server.script = script
    fault_server.outage = True
    assert [post(fault_server, request())[0] for _ in range(3)] == [503] * 3
    fault_server.outage = False
    assert post(fault_server, request())[0] == 200
    assert calls == [3]
    assert [r.outage for r in fault_server.requests] == [True, True, True, False]


def test_fault_plan_is_deterministic_and_keeps_its_rate() -> None:
    faults: list[Fault] = [ServerError(503), RateLimited(1), StreamCut()]
    plan = FaultPlan(always(DEFAULT_ANSWER), seed=7, rate=0.2, faults=faults)
    again = FaultPlan(always(DEFAULT_ANSWER), seed=7, rate=0.2, faults=faults)
    other = FaultPlan(always(DEFAULT_ANSWER), seed=8, rate=0.2, faults=faults)
    drawn = [plan.fault_for(i) for i in range(2000)]
    assert drawn == [again.fault_for(i) for i in range(2000)]
    assert drawn != [other.fault_for(i) for i in range(2000)]
    failed = [f for f in drawn if f is not None]
    assert 0.17 < len(failed) / len(drawn) < 0.23
    assert {type(f) for f in failed} == {ServerError, RateLimited, StreamCut}
    # A stream fault cuts the answer the wrapped script gave.
    index = next(i for i, f in enumerate(drawn) if isinstance(f, StreamCut))
    assert plan({}, index) == StreamCut(answer=DEFAULT_ANSWER)
    assert FaultPlan(always(DEFAULT_ANSWER), seed=1, rate=0.0, faults=[]).fault_for(0) is None
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(always(DEFAULT_ANSWER), seed=1, rate=1.5, faults=faults)


def test_fault_plan_serves_through_the_server() -> None:
    plan = FaultPlan(always(DEFAULT_ANSWER), seed=3, rate=0.5, faults=[ServerError(500)])
    with FaultServer(plan) as server:
        statuses = [post(server, request())[0] for _ in range(20)]
    expected = [500 if plan.fault_for(i) else 200 for i in range(20)]
    assert statuses == expected
    assert 500 in statuses
    assert 200 in statuses


# -- lifecycle --------------------------------------------------------------------------


def test_stop_ends_stalls_and_idle_keep_alive_connections() -> None:
    threads_before = threading.active_count()
    server = FaultServer(in_order(DEFAULT_ANSWER, ConnectTimeout(stall_seconds=60))).start()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    stalled = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        idle.request("POST", "/v1/chat/completions", json.dumps(request()).encode())
        assert idle.getresponse().read()  # the connection stays open (keep-alive)
        stalled.request("POST", "/v1/chat/completions", json.dumps(request()).encode())
        server.wait_for_requests(2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        assert threading.active_count() == threads_before
        with pytest.raises(http.client.RemoteDisconnected):
            stalled.getresponse()
    finally:
        idle.close()
        stalled.close()
    with pytest.raises(RuntimeError):
        _ = server.port
    server.stop()  # stopping twice is harmless


def test_a_server_restarts_on_a_new_port() -> None:
    server = FaultServer()
    with server:
        assert post(server, request())[0] == 200
    with server:
        assert post(server, request())[0] == 200
    assert len(server) == 2
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()
