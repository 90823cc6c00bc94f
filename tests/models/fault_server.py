"""A loopback OpenAI-compatible server that serves scripted answers and injected faults.

Usage::

    from tests.models.fault_server import FaultServer, RateLimited, StreamCut, in_order

    with FaultServer(in_order(RateLimited(2), StreamCut("mid_tool_arguments"), answer)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=0.5)
        ...
        srv.requests          # [RequestRecord(index, arrived, body, served, status, ...)]

The ``fault_server`` fixture (``tests/models/conftest.py``) gives a running server with
the default answer; set ``fault_server.script`` / ``fault_server.outage`` in the test.
The server runs in daemon threads, so sync clients and async clients on any event loop
can use it. ``FaultPlan(script, seed, rate, faults)`` injects faults at a rate.

How the ``openai`` SDK (3.51 and 3.54, ``max_retries=0``) surfaces each fault
=============================================================================

Pinned by ``test_fault_server.py``. "create" is ``client.chat.completions.create(...)``;
with ``stream=True`` it returns an ``openai.Stream`` as soon as the response headers
arrive, and "iter" is iterating that stream. Exception classes are ``openai.*``.

Class tree, most specific first (an adapter's ``except`` clauses must follow it)::

    APIError                      .message .body .code .type .param (no status_code)
    ├── APIConnectionError        .body None, .code None; __cause__ is the httpx2 error
    │   └── APITimeoutError       "Request timed out."
    └── APIStatusError            .status_code .response (.headers) .request_id
        ├── BadRequestError 400, AuthenticationError 401, PermissionDeniedError 403,
        ├── NotFoundError 404, UnprocessableEntityError 422, RateLimitError 429
        └── InternalServerError   every status >= 500
    json.JSONDecodeError          NOT an openai error: a chunk or body that is not JSON

``exc.body`` of an ``APIStatusError`` is the *inner* object of ``{"error": {...}}``
(``{"message","type","param","code"}``), already unwrapped; ``exc.code``/``exc.type``
read from it (``None`` when absent). A non-JSON error body (an HTML 502 page) makes
``exc.body`` the raw ``str`` and ``exc.code`` ``None``. ``Retry-After`` is read from
``exc.response.headers.get("retry-after")``: seconds (``"2"``, ``"0.5"``) or an HTTP-date
(``"Tue, 24 Nov 2026 09:33:42 GMT"``, parse with ``email.utils.parsedate_to_datetime``);
OpenAI may also send ``retry-after-ms``. With ``max_retries > 0`` the SDK retries 429/5xx
and honours ``Retry-After`` itself, so the adapter must pass ``max_retries=0``.

=========================  ============================================  ==================
Fault (wire)               SDK behaviour                                 tether error_class
=========================  ============================================  ==================
RateLimited                create raises ``RateLimitError``,             rate_limited
(429, code                 ``status_code == 429``,                       (retry_after from
rate_limit_exceeded,       ``code == "rate_limit_exceeded"``,            the header)
type rate_limit_error)     ``type == "rate_limit_error"``; stream or not
QuotaExhausted (429,       create raises ``RateLimitError`` (same        quota_exhausted
code+type                  class!) with ``code == "insufficient_quota"``;
insufficient_quota)        no ``retry-after``. Tell apart by ``code``
ServerError 500, 502       create raises ``InternalServerError``,        server_error
                           ``status_code`` 500/502, ``code is None``,
                           ``type == "server_error"``; HTML: body str
ServerError 503, 529       the same ``InternalServerError``; only        overloaded
(and ``outage``)           ``status_code`` (503/529) tells them apart
Unauthorized (401,         create raises ``AuthenticationError``,        auth_error
code invalid_api_key)      ``code == "invalid_api_key"`` (403:
                           ``PermissionDeniedError``, also auth_error)
ContextLength (400,        create raises ``BadRequestError``,            context_too_long
code context_length_       ``code == "context_length_exceeded"``,
exceeded, param messages)  ``param == "messages"``
BadRequest 400/404/422     ``BadRequestError`` / ``NotFoundError`` /     bad_request
                           ``UnprocessableEntityError``, other ``code``
ErrorBody200, no stream    NO exception: create returns a                server_error
(200, JSON {"error":..})   ``ChatCompletion`` with ``choices is None``,
                           ``id is None`` (not validated) and
                           ``completion.model_extra["error"]`` = the
                           inner error dict. Check ``model_extra``
                           for ``"error"`` / falsy ``choices``
ErrorBody200, stream       create returns; iter raises a bare            server_error
(200 SSE, one event        ``APIError`` (``type(exc) is APIError``, no
``data: {"error":..}``)    ``status_code`` attribute), ``exc.body`` =
                           inner error, ``exc.code``/``exc.type`` set.
                           Also possible after chunks
ConnectTimeout (request    create raises ``APITimeoutError`` after the   timeout
read, nothing sent; the    read timeout, ``__cause__`` ``ReadTimeout``;
server stalls)             stream or not. ``connect_blackhole()`` (a
                           real TCP connect timeout): same class,
                           ``__cause__`` ``ConnectTimeout``
StallAfterHeaders,         create raises ``APITimeoutError``             timeout
no stream                  (``ReadTimeout``)
StallAfterHeaders, stream  create RETURNS the ``Stream``; iter yields    timeout
                           the ``after_chunks`` chunks, then raises
                           ``APITimeoutError`` (``ReadTimeout``)
Disconnect (request read,  create raises ``APIConnectionError`` (not     connection_error
connection closed, no      the timeout subclass), ``__cause__``
byte sent)                 ``RemoteProtocolError``; stream or not.
                           ``refused_url()``: same class, ``__cause__``
                           ``ConnectError``
StreamCut, abrupt=True     create returns; iter yields the chunks        stream_truncated
(TCP closed inside the     sent, then raises ``APIConnectionError``      (but see "after a
chunked body)              (``__cause__`` ``RemoteProtocolError``).      finish_reason"
                           Same for every ``at``                         below)
StreamCut, abrupt=False    create returns; iter yields the chunks sent   stream_truncated
(body ends properly)       and then STOPS SILENTLY, no exception. The    unless a
                           caller cannot tell whether ``[DONE]`` came    finish_reason was
                                                                         seen
  at=no_finish_reason      all text and COMPLETE, parseable tool         stream_truncated
                           arguments, but no chunk has a finish_reason
  at=mid_tool_arguments    first call's id/name and a prefix of its      stream_truncated
                           arguments (``json.loads`` fails); no finish
  at=before_usage          finish_reason seen, usage chunk missing       complete answer,
                           (with ``include_usage``)                      usage unknown
  at=no_done               finish_reason and usage seen, only            complete answer
                           ``[DONE]`` missing
StreamCut, no stream       create raises ``APIConnectionError``          connection_error
(half a JSON body)         (``RemoteProtocolError``)
MalformedChunk, stream     create returns; iter yields ``after_chunks``  stream_truncated
(``data: {"id":..`` cut)   chunks, then raises ``json.JSONDecodeError``
                           (a ``ValueError``; NOT an ``OpenAIError``)
MalformedChunk, no stream  create raises ``json.JSONDecodeError``        invalid_response
(200 JSON, truncated)
DuplicateChunks, stream    NO exception: every chunk is yielded twice:   stream_truncated
                           a second delta carrying ``id`` for a tool
                           ``index`` already started, a second
                           ``finish_reason``, doubled text, arguments
                           that no longer parse, two usage chunks
DuplicateChunks, no stream a normal answer                               (none)
=========================  ============================================  ==================

Rules the table implies for the adapter (``stream=True``,
``stream_options={"include_usage": True}``):

1. Catch in this order: ``APITimeoutError`` -> timeout; ``APIConnectionError`` ->
   connection_error when raised by create, stream_truncated when raised while
   iterating; ``APIStatusError`` -> by ``status_code`` (429: ``exc.code ==
   "insufficient_quota"`` -> quota_exhausted, else rate_limited; 503/529 -> overloaded;
   other >= 500 -> server_error; 401/403 -> auth_error; 400 with ``exc.code ==
   "context_length_exceeded"`` -> context_too_long; other 4xx -> bad_request); a bare
   ``APIError`` (in-stream error event) -> server_error; ``ValueError`` while iterating
   (``json.JSONDecodeError``) -> stream_truncated.
2. A stream that ends without an exception is complete only if exactly one chunk had a
   ``finish_reason``, no chunk with non-empty ``choices`` came after it, every tool
   call ``index`` got its ``id`` and ``name`` exactly once, and every tool call's
   concatenated ``arguments`` parse as a JSON object. Otherwise: stream_truncated, and
   no tool call from it is executed.
3. After a ``finish_reason`` has been seen (and rule 2 holds), a later
   ``APIConnectionError`` loses only the usage chunk and/or ``[DONE]``: the answer is
   complete. Usage comes from the chunk with ``choices == []`` if it arrived, otherwise
   it is unknown (``unknown_usage``), never zero.
4. Non-streaming answers are not validated by the SDK: treat ``completion.model_extra``
   containing ``"error"`` as server_error and a missing/empty ``choices`` as
   invalid_response.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

__all__ = [
    "DEFAULT_ANSWER",
    "Answer",
    "BadRequest",
    "ConnectTimeout",
    "ContextLength",
    "Disconnect",
    "DuplicateChunks",
    "ErrorBody200",
    "Fault",
    "FaultPlan",
    "FaultServer",
    "MalformedChunk",
    "QuotaExhausted",
    "RateLimited",
    "Reply",
    "RequestRecord",
    "Script",
    "ServerError",
    "StallAfterHeaders",
    "StreamCut",
    "ToolCall",
    "Unauthorized",
    "Usage",
    "always",
    "connect_blackhole",
    "http_date_in",
    "in_order",
    "refused_url",
    "tool_then_answer",
]

# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One tool call in an answer. ``arguments`` is sent verbatim when it is a string."""

    id: str
    name: str
    arguments: str | Mapping[str, Any] = "{}"

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reports them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True)
class Answer:
    """A normal answer: text and/or tool calls.

    ``finish_reason`` defaults to ``"tool_calls"`` when there are tool calls, else
    ``"stop"``. ``usage`` defaults to a deterministic estimate (characters / 4).
    In a stream, text and each tool call's arguments are sent in fragments of
    ``fragment_size`` characters.
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    fragment_size: int = 8

    @property
    def effective_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


DEFAULT_ANSWER = Answer(text="The answer is 42.")
"""The default script's answer; also cut by stream faults given no answer of their own."""

_CUT_TOOL_CALL = ToolCall(id="call_cut0", name="lookup", arguments={"query": "weather in Paris"})


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429, ``code: rate_limit_exceeded``, with an optional ``Retry-After`` header.

    Give ``retry_after_seconds`` (sent as a number, e.g. ``2`` or ``0.5``) or
    ``retry_after_http_date`` (sent as an IMF-fixdate, see :func:`http_date_in`), or
    neither for a 429 without the header (the date wins if both are given).
    ``retry_after_ms`` adds the non-standard
    ``retry-after-ms`` header OpenAI also sends.
    """

    retry_after_seconds: float | None = 1.0
    retry_after_http_date: datetime | None = None
    retry_after_ms: float | None = None


@dataclass(frozen=True)
class QuotaExhausted:
    """HTTP 429 whose ``code`` and ``type`` are ``insufficient_quota`` (fatal)."""


@dataclass(frozen=True)
class ServerError:
    """An HTTP 5xx (500, 502, 503 or 529). ``html=True`` sends a proxy's HTML page."""

    status: int = 500
    html: bool = False

    def __post_init__(self) -> None:
        if not 500 <= self.status <= 599:
            raise ValueError(f"ServerError needs a 5xx status, not {self.status}")


@dataclass(frozen=True)
class ConnectTimeout:
    """Accept the connection, read the request, then send nothing at all.

    The kernel has already completed the TCP handshake when the server sees a request,
    so the client's *read* timeout fires, not its connect timeout; the SDK raises the
    same ``APITimeoutError`` for both. (For a real connect timeout, point the client at
    :func:`connect_blackhole`.) The handler gives up after ``stall_seconds`` or when
    the server stops, and then closes the connection.
    """

    stall_seconds: float = 30.0


@dataclass(frozen=True)
class StallAfterHeaders:
    """Send 200 and the headers (and ``after_chunks`` SSE chunks), then stall.

    On a non-streaming request the headers announce the full ``Content-Length`` and
    no body byte follows.
    """

    after_chunks: int = 0
    stall_seconds: float = 30.0
    answer: Answer | None = None


CutPoint: TypeAlias = Literal["no_finish_reason", "mid_tool_arguments", "before_usage", "no_done"]


@dataclass(frozen=True)
class StreamCut:
    """A stream that ends early.

    ``at``:

    - ``no_finish_reason``: every content and tool-call chunk (arguments complete), but
      never the chunk with ``finish_reason``, the usage chunk or ``[DONE]``;
    - ``mid_tool_arguments``: the first tool call's id/name chunk and about half of its
      argument fragments (an answer without tool calls is replaced by one call to
      ``lookup``);
    - ``before_usage``: everything up to and including the ``finish_reason`` chunk, but
      not the usage chunk (with ``include_usage``) nor ``[DONE]``;
    - ``no_done``: every chunk including usage, only ``data: [DONE]`` is missing.

    ``abrupt=True`` closes the TCP connection inside the chunked body (no terminating
    zero-length chunk), as a dropped connection does; ``abrupt=False`` ends the HTTP
    body properly, as a proxy that gives up politely does. On a non-streaming request
    the server announces the full ``Content-Length``, sends half the body and closes.
    """

    at: CutPoint = "no_finish_reason"
    abrupt: bool = True
    answer: Answer | None = None


@dataclass(frozen=True)
class MalformedChunk:
    """After ``after_chunks`` good chunks, one ``data:`` line that is not JSON; then the rest.

    On a non-streaming request: HTTP 200, ``application/json``, a truncated JSON body.
    """

    after_chunks: int = 1
    payload: str = '{"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"delta'
    answer: Answer | None = None


@dataclass(frozen=True)
class DuplicateChunks:
    """Every SSE chunk is sent twice (``[DONE]`` once). Non-streaming: a normal answer."""

    answer: Answer | None = None


@dataclass(frozen=True)
class ErrorBody200:
    """HTTP 200 whose body is ``{"error": {...}}``.

    Non-streaming: an ``application/json`` body. Streaming: ``after_chunks`` chunks of
    ``answer``, then one ``data: {"error": ...}`` event, then the body ends properly
    (no ``[DONE]``).
    """

    message: str = "The server had an error while processing your request. Sorry about that!"
    type: str = "server_error"
    code: str | None = None
    after_chunks: int = 0
    answer: Answer | None = None


@dataclass(frozen=True)
class Unauthorized:
    """HTTP 401, ``code: invalid_api_key``."""


@dataclass(frozen=True)
class ContextLength:
    """HTTP 400, ``code: context_length_exceeded``, ``param: messages``."""


@dataclass(frozen=True)
class BadRequest:
    """Another request error: HTTP 400 (or 403, 404, 422) with an ``invalid_request_error``."""

    status: int = 400
    code: str | None = "invalid_value"
    message: str = "Invalid value for 'tool_choice'."


@dataclass(frozen=True)
class Disconnect:
    """Read the request, then close the connection without sending a single byte."""


Fault: TypeAlias = (
    RateLimited
    | QuotaExhausted
    | ServerError
    | ConnectTimeout
    | StallAfterHeaders
    | StreamCut
    | MalformedChunk
    | DuplicateChunks
    | ErrorBody200
    | Unauthorized
    | ContextLength
    | BadRequest
    | Disconnect
)
Reply: TypeAlias = Answer | Fault
Script: TypeAlias = Callable[[dict[str, Any], int], Reply]
"""``(request_json, request_index) -> Reply``; ``request_index`` counts from 0 per server."""

_STREAM_FAULTS = (StallAfterHeaders, StreamCut, MalformedChunk, DuplicateChunks, ErrorBody200)


def http_date_in(seconds: float) -> datetime:
    """A datetime ``seconds`` from now, for ``RateLimited(retry_after_http_date=...)``.

    An HTTP-date has whole seconds only: the header says the next whole second at or
    after the moment, so the wait it asks for is ``seconds`` up to one second more.
    """
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


# --------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------


def always(reply: Reply) -> Script:
    """A script that serves ``reply`` to every request."""

    def script(request: dict[str, Any], index: int) -> Reply:
        return reply

    return script


def in_order(*replies: Reply) -> Script:
    """Serve ``replies[i]`` to request ``i``; the last one repeats."""
    if not replies:
        raise ValueError("in_order needs at least one reply")

    def script(request: dict[str, Any], index: int) -> Reply:
        return replies[min(index, len(replies) - 1)]

    return script


def tool_then_answer(
    tool: str,
    arguments: str | Mapping[str, Any],
    text: str = "Done.",
    *,
    usage: Usage | None = None,
) -> Script:
    """Call ``tool`` with ``arguments`` unless the last message is a tool result; then answer.

    The tool call id is ``call_<request_index>_0``.
    """

    def script(request: dict[str, Any], index: int) -> Reply:
        messages = request.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if isinstance(last, dict) and last.get("role") == "tool":
            return Answer(text=text, usage=usage)
        call = ToolCall(id=f"call_{index}_0", name=tool, arguments=arguments)
        return Answer(tool_calls=[call], usage=usage)

    return script


@dataclass
class FaultPlan:
    """Wrap ``script``: each request fails with probability ``rate``, drawing from ``faults``.

    The draw for request ``i`` depends only on ``(seed, i)``, so a plan replays exactly.
    Stream faults without an answer of their own cut the answer ``script`` gave.
    """

    script: Script
    seed: int
    rate: float
    faults: Sequence[Fault]

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], not {self.rate}")
        if self.rate > 0 and not self.faults:
            raise ValueError("a positive rate needs at least one fault")

    def fault_for(self, index: int) -> Fault | None:
        rng = random.Random(self.seed * 1_000_003 + index)
        if rng.random() < self.rate:
            return rng.choice(list(self.faults))
        return None

    def __call__(self, request: dict[str, Any], index: int) -> Reply:
        reply = self.script(request, index)
        fault = self.fault_for(index)
        if fault is None:
            return reply
        if isinstance(fault, _STREAM_FAULTS) and fault.answer is None and isinstance(reply, Answer):
            return replace(fault, answer=reply)
        return fault


# --------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request as the server saw it, and what it served.

    ``arrived`` and ``responded`` are ``time.monotonic()`` values: ``arrived`` once the
    request was read, ``responded`` just before the last byte was written (``None`` if
    the server never finished, e.g. a stall or a cut).
    """

    index: int
    arrived: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    stream: bool = False
    include_usage: bool = False
    served: Reply | None = None
    status: int | None = None
    outage: bool = False
    responded: float | None = None


# --------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------


def _fragments(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _estimate_usage(request: Mapping[str, Any], answer: Answer) -> Usage:
    if answer.usage is not None:
        return answer.usage
    prompt = len(json.dumps(request.get("messages", []))) // 4
    completion = len(answer.text or "") + sum(len(c.arguments_json) for c in answer.tool_calls)
    return Usage(prompt_tokens=max(1, prompt), completion_tokens=max(1, completion // 4))


def _error_json(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json.dumps(body).encode()


@dataclass(frozen=True)
class _Chunk:
    kind: Literal["role", "text", "tool_start", "tool_args", "finish", "usage"]
    data: dict[str, Any]
    tool_index: int = -1


@dataclass
class _Completion:
    """Everything needed to render one answer, as a JSON body or as SSE chunks."""

    answer: Answer
    completion_id: str
    model: str
    created: int
    usage: Usage

    def _envelope(self, object_: str) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": object_,
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_faultsrv",
        }

    def body(self) -> dict[str, Any]:
        answer = self.answer
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.text,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in answer.tool_calls
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": answer.effective_finish_reason,
        }
        return {
            **self._envelope("chat.completion"),
            "choices": [choice],
            "usage": self.usage.to_json(),
        }

    def chunks(self, include_usage: bool) -> list[_Chunk]:
        answer = self.answer

        def chunk(kind: Any, delta: dict[str, Any], index: int = -1) -> _Chunk:
            data = {
                **self._envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            }
            if include_usage:
                data["usage"] = None
            return _Chunk(kind, data, index)

        out: list[_Chunk] = []
        role: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if answer.text is not None or not answer.tool_calls:
            out.append(chunk("role", {**role, "content": ""}))
            out.extend(
                chunk("text", {"content": piece})
                for piece in _fragments(answer.text or "", answer.fragment_size)
            )
            role = {}
        for i, call in enumerate(answer.tool_calls):
            start = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(chunk("tool_start", {**role, "tool_calls": [start]}, i))
            role = {}
            out.extend(
                chunk(
                    "tool_args", {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, i
                )
                for piece in _fragments(call.arguments_json, answer.fragment_size)
            )
        finish = chunk("finish", {})
        finish.data["choices"][0]["finish_reason"] = answer.effective_finish_reason
        out.append(finish)
        if include_usage:
            usage = {**self._envelope("chat.completion.chunk"), "choices": []}
            usage["usage"] = self.usage.to_json()
            out.append(_Chunk("usage", usage))
        return out


def _cut_chunks(chunks: list[_Chunk], at: CutPoint) -> list[_Chunk]:
    """The chunks a :class:`StreamCut` sends before it stops."""
    kinds = [c.kind for c in chunks]
    if at == "no_finish_reason":
        return chunks[: kinds.index("finish")]
    if at == "before_usage":
        return chunks[: kinds.index("finish") + 1]
    if at == "no_done":
        return chunks
    # mid_tool_arguments: the first tool call's start and half its argument fragments.
    start = kinds.index("tool_start")
    args = [i for i, c in enumerate(chunks) if c.kind == "tool_args" and c.tool_index == 0]
    return chunks[: start + 1] + [chunks[i] for i in args[: len(args) // 2]]


def _with_split_arguments(answer: Answer) -> Answer:
    """Make sure the first tool call's arguments come in at least two fragments."""
    if not answer.tool_calls:
        answer = replace(answer, text=None, tool_calls=[_CUT_TOOL_CALL], finish_reason=None)
    first = answer.tool_calls[0].arguments_json
    if 1 < len(first) <= answer.fragment_size:
        answer = replace(answer, fragment_size=max(1, len(first) // 2))
    return answer


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


class _Abort(Exception):
    """Close the connection now, without finishing the response."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the request log is the record

    # -- plumbing ------------------------------------------------------------------

    @property
    def owner(self) -> FaultServer:
        return self.server.owner

    def _send_head(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_bytes(
        self, record: RequestRecord, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        record.status = status
        self._send_head(status, {**headers, "Content-Length": str(len(body))})
        record.responded = time.monotonic()
        self.wfile.write(body)

    def _send_json(
        self,
        record: RequestRecord,
        status: int,
        body: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "x-request-id": f"req_fault{record.index:06d}",
            "openai-processing-ms": "1",
            **(extra or {}),
        }
        self._send_bytes(record, status, body, headers)

    def _start_stream(self, record: RequestRecord) -> None:
        record.status = 200
        self._send_head(
            200,
            {
                "Content-Type": "text/event-stream; charset=utf-8",
                "Transfer-Encoding": "chunked",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_fault{record.index:06d}",
            },
        )

    def _write_chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def _event(self, data: str) -> None:
        self._write_chunk(f"data: {data}\n\n".encode())

    def _end_stream(self, record: RequestRecord) -> None:
        record.responded = time.monotonic()
        self.wfile.write(b"0\r\n\r\n")

    def _stall(self, seconds: float) -> None:
        self.owner._closing.wait(seconds)
        raise _Abort

    # -- requests ------------------------------------------------------------------

    def do_GET(self) -> None:
        self._not_found()

    def _not_found(self) -> None:
        body = _error_json(f"Unknown path {self.path}", "invalid_request_error", "unknown_url")
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] not in _CHAT_PATHS:
            self._not_found()
            return
        try:
            parsed = json.loads(raw)
            body: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
        except ValueError:
            body = None
        record = self.owner._record(self.path, dict(self.headers.items()), body)
        try:
            self._serve(record)
        except _Abort:
            self.close_connection = True

    def _serve(self, record: RequestRecord) -> None:
        if record.body is None:
            record.served = BadRequest(code=None, message="We could not parse the JSON body.")
            self._send_json(
                record, 400, _error_json(record.served.message, "invalid_request_error", None)
            )
            return
        reply: Reply
        if self.owner.outage:
            record.outage = True
            reply = ServerError(503)
        else:
            try:
                reply = self.owner.script(record.body, record.index)
            except Exception:
                self.owner.errors.append(traceback.format_exc())
                reply = ServerError(500)
        record.served = reply
        if isinstance(reply, Answer):
            self._serve_answer(record, reply)
        else:
            self._serve_fault(record, reply)

    def _completion(self, record: RequestRecord, answer: Answer) -> _Completion:
        request = record.body or {}
        return _Completion(
            answer=answer,
            completion_id=f"chatcmpl-fault{record.index:06d}",
            model=str(request.get("model", "fault-model")),
            created=int(time.time()),
            usage=_estimate_usage(request, answer),
        )

    def _serve_answer(self, record: RequestRecord, answer: Answer) -> None:
        completion = self._completion(record, answer)
        if not record.stream:
            self._send_json(record, 200, json.dumps(completion.body()).encode())
            return
        self._start_stream(record)
        for chunk in completion.chunks(record.include_usage):
            self._event(json.dumps(chunk.data))
        self._event("[DONE]")
        self._end_stream(record)

    def _serve_fault(self, record: RequestRecord, fault: Fault) -> None:
        match fault:
            case RateLimited():
                self._serve_rate_limited(record, fault)
            case QuotaExhausted():
                message = (
                    "You exceeded your current quota, please check your plan and billing details."
                )
                body = _error_json(message, "insufficient_quota", "insufficient_quota")
                self._send_json(record, 429, body)
            case ServerError(status=status, html=html):
                self._serve_server_error(record, status, html)
            case Unauthorized():
                message = "Incorrect API key provided: sk-fault. You can find your API key at https://platform.openai.com/account/api-keys."
                body = _error_json(message, "invalid_request_error", "invalid_api_key")
                self._send_json(record, 401, body)
            case ContextLength():
                message = (
                    "This model's maximum context length is 128000 tokens. However, your "
                    "messages resulted in 130000 tokens. Please reduce the length of the messages."
                )
                body = _error_json(
                    message, "invalid_request_error", "context_length_exceeded", "messages"
                )
                self._send_json(record, 400, body)
            case BadRequest(status=status, code=code, message=message):
                self._send_json(record, status, _error_json(message, "invalid_request_error", code))
            case ErrorBody200():
                self._serve_error_body_200(record, fault)
            case ConnectTimeout(stall_seconds=seconds):
                self._stall(seconds)
            case Disconnect():
                raise _Abort
            case StallAfterHeaders() | StreamCut() | MalformedChunk() | DuplicateChunks():
                self._serve_stream_fault(record, fault)

    def _serve_rate_limited(self, record: RequestRecord, fault: RateLimited) -> None:
        headers = {"x-ratelimit-remaining-requests": "0"}
        if fault.retry_after_http_date is not None:
            headers["retry-after"] = email.utils.format_datetime(
                fault.retry_after_http_date.astimezone(UTC), usegmt=True
            )
        elif fault.retry_after_seconds is not None:
            headers["retry-after"] = f"{fault.retry_after_seconds:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        message = "Rate limit reached for requests. Please try again later."
        body = _error_json(message, "rate_limit_error", "rate_limit_exceeded")
        self._send_json(record, 429, body, headers)

    def _serve_server_error(self, record: RequestRecord, status: int, html: bool) -> None:
        if html:
            page = f"<html><head><title>{status}</title></head><body>upstream error</body></html>"
            self._send_bytes(record, status, page.encode(), {"Content-Type": "text/html"})
            return
        messages = {
            503: "The server is overloaded or not ready yet.",
            529: "The engine is currently overloaded, please try again later.",
        }
        message = messages.get(
            status, "The server had an error while processing your request. Sorry about that!"
        )
        self._send_json(record, status, _error_json(message, "server_error", None))

    def _serve_error_body_200(self, record: RequestRecord, fault: ErrorBody200) -> None:
        body = _error_json(fault.message, fault.type, fault.code)
        if not record.stream:
            self._send_json(record, 200, body)
            return
        answer = fault.answer or DEFAULT_ANSWER
        self._start_stream(record)
        chunks = self._completion(record, answer).chunks(record.include_usage)
        for chunk in chunks[: fault.after_chunks]:
            self._event(json.dumps(chunk.data))
        self._event(body.decode())
        self._end_stream(record)

    def _serve_stream_fault(
        self,
        record: RequestRecord,
        fault: StallAfterHeaders | StreamCut | MalformedChunk | DuplicateChunks,
    ) -> None:
        answer = fault.answer or DEFAULT_ANSWER
        if isinstance(fault, StreamCut) and fault.at == "mid_tool_arguments":
            answer = _with_split_arguments(answer)
        completion = self._completion(record, answer)
        if not record.stream:
            self._serve_body_fault(record, fault, completion)
            return
        self._start_stream(record)
        self._write_stream_fault(record, fault, completion.chunks(record.include_usage))

    def _write_stream_fault(
        self,
        record: RequestRecord,
        fault: StallAfterHeaders | StreamCut | MalformedChunk | DuplicateChunks,
        chunks: list[_Chunk],
    ) -> None:
        match fault:
            case StallAfterHeaders(after_chunks=n, stall_seconds=seconds):
                for chunk in chunks[:n]:
                    self._event(json.dumps(chunk.data))
                self._stall(seconds)
            case StreamCut(at=at, abrupt=abrupt):
                for chunk in _cut_chunks(chunks, at):
                    self._event(json.dumps(chunk.data))
                if abrupt:
                    raise _Abort
                self._end_stream(record)
            case MalformedChunk(after_chunks=n, payload=payload):
                for chunk in chunks[:n]:
                    self._event(json.dumps(chunk.data))
                self._event(payload)
                for chunk in chunks[n:]:
                    self._event(json.dumps(chunk.data))
                self._event("[DONE]")
                self._end_stream(record)
            case DuplicateChunks():
                for chunk in chunks:
                    self._event(json.dumps(chunk.data))
                    self._event(json.dumps(chunk.data))
                self._event("[DONE]")
                self._end_stream(record)

    def _serve_body_fault(
        self,
        record: RequestRecord,
        fault: StallAfterHeaders | StreamCut | MalformedChunk | DuplicateChunks,
        completion: _Completion,
    ) -> None:
        body = json.dumps(completion.body()).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        match fault:
            case StallAfterHeaders(stall_seconds=seconds):
                record.status = 200
                self._send_head(200, headers)
                self._stall(seconds)
            case StreamCut():
                record.status = 200
                self._send_head(200, headers)
                self.wfile.write(body[: len(body) // 2])
                raise _Abort
            case MalformedChunk(payload=payload):
                self._send_json(record, 200, payload.encode())
            case DuplicateChunks():
                self._send_json(record, 200, body)


class _HTTPServer(ThreadingHTTPServer):
    """Tracks its connections, so stopping can close idle keep-alive ones."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: FaultServer) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._process, args=(request, client_address), daemon=True)
        with self._lock:
            self._connections.add(request)
            self._handlers.add(thread)
        thread.start()

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.discard(request)
                self._handlers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = traceback.format_exc()
        if not any(name in error for name in _CLIENT_GONE):
            self.owner.errors.append(error)

    def close_connections(self, timeout: float) -> None:
        with self._lock:
            connections = list(self._connections)
            handlers = list(self._handlers)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))


_CLIENT_GONE = ("BrokenPipeError", "ConnectionResetError", "ConnectionAbortedError")


class FaultServer:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1, in a daemon thread.

    Use it as a context manager (``with FaultServer(script) as server:``) or call
    :meth:`start` and :meth:`stop`. Point a client at :attr:`base_url`. ``script``,
    ``outage`` can be changed at any time; :attr:`requests` is the request log.
    """

    def __init__(self, script: Script | None = None, *, host: str = "127.0.0.1") -> None:
        self.script: Script = script or always(DEFAULT_ANSWER)
        self.outage = False
        """While true, every request gets a 503 and the script is not called."""
        self.errors: list[str] = []
        """Tracebacks of unexpected exceptions in the server (a bug in a test or here)."""
        self._host = host
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._closing.clear()
        self._httpd = _HTTPServer((self._host, 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fault-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, end stalls, close every connection and wait for the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._closing.set()
        httpd.shutdown()
        httpd.close_connections(timeout)
        httpd.server_close()
        thread.join(timeout)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The ``base_url`` for an OpenAI client, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    # -- the request log -----------------------------------------------------------

    def _record(
        self, path: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> RequestRecord:
        options = body.get("stream_options") if body else None
        with self._lock:
            record = RequestRecord(
                index=len(self._records),
                arrived=time.monotonic(),
                path=path,
                headers=headers,
                body=body,
                stream=bool(body and body.get("stream")),
                include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            )
            self._records.append(record)
        return record

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.requests)

    def reset(self) -> None:
        """Forget the log; the next request gets index 0 again."""
        with self._lock:
            self._records.clear()

    def wait_for_requests(self, count: int, timeout: float = 2.0) -> list[RequestRecord]:
        """Wait until at least ``count`` requests arrived; raise ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while len(self) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self)} requests arrived, expected {count}")
            time.sleep(0.005)
        return self.requests


# --------------------------------------------------------------------------------------
# Endpoints that never answer
# --------------------------------------------------------------------------------------


@contextmanager
def connect_blackhole(host: str = "127.0.0.1") -> Iterator[str]:
    """A ``base_url`` whose TCP connect never completes: a real *connect* timeout.

    A listening socket with a full accept queue that never accepts; on Linux the kernel
    then drops further SYNs, so the client's connect timeout fires.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
        time.sleep(0.05)  # let the handshakes that can complete fill the queue
        yield f"http://{host}:{port}/v1"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def refused_url(host: str = "127.0.0.1") -> str:
    """A ``base_url`` on a port nobody listens on: connects are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"http://{host}:{port}/v1"
