"""http_fetch: allowlist, URL refusals, redirects, size cap, status and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from tether import ConfigurationError, Effect, Risk, ToolError
from tether.ids import trace_id
from tether.toolkit import MAX_REDIRECTS, http_fetch_tool
from tether.tools import RunContext

Handler = Callable[[httpx2.Request], Any]
CONTEXT = RunContext(
    run_id="run_1", agent="a", user=None, step=2, call_id="c1", idempotency_key="k"
)


class Recorder:
    """A MockTransport that records every request it is asked to send."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx2.Request] = []
        self._handler = handler

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        response = self._handler(request)
        if asyncio.iscoroutine(response):
            response = await response
        assert isinstance(response, httpx2.Response)
        return response

    @property
    def urls(self) -> list[str]:
        return [str(r.url) for r in self.requests]


def fetcher(handler: Handler, **options: Any) -> tuple[Callable[[str], str], Recorder]:
    recorder = Recorder(handler)
    options.setdefault("allowed_hosts", ["example.com", "*.example.org"])
    tool = http_fetch_tool(
        **options, client=httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
    )

    def fetch(url: str) -> str:
        result: str = asyncio.run(tool.function(url=url, context=CONTEXT))
        return result

    return fetch, recorder


def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, text=f"hello from {request.url.host}{request.url.path}")


def refused(fetch: Callable[[str], str], url: str, match: str) -> ToolError:
    with pytest.raises(ToolError, match=match) as caught:
        fetch(url)
    return caught.value


# -- the tool ------------------------------------------------------------------------


def test_the_tool_reads_and_names_its_hosts() -> None:
    tool = http_fetch_tool(allowed_hosts=["example.com", "*.example.org"])
    assert tool.name == "http_fetch"
    assert (tool.risk, tool.effect) == (Risk.READ, Effect.READ)
    assert "example.com, *.example.org" in tool.description
    assert list(tool.definition.parameters["properties"]) == ["url"]


@pytest.mark.parametrize(
    ("hosts", "match"),
    [
        ([], "empty"),
        ("example.com", "not one string"),
        (["*"], "invalid"),
        (["*.*.example.com"], "invalid"),
        (["ex*ample.com"], "invalid"),
        (["example.com/path"], "invalid"),
        (["user@example.com"], "invalid"),
        (["example.com:8080"], "port"),
        ([""], "invalid"),
    ],
)
def test_bad_allowlists_are_configuration_errors(hosts: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        http_fetch_tool(allowed_hosts=hosts)


def test_bad_limits_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        http_fetch_tool(allowed_hosts=["a.com"], timeout=0)
    with pytest.raises(ConfigurationError, match="max_bytes"):
        http_fetch_tool(allowed_hosts=["a.com"], max_bytes=0)


# -- the allowlist -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a",
        "http://EXAMPLE.com/a",
        "https://example.com./a",
        "https://example.com:8443/a",
        "https://api.example.org/v1",
        "https://deep.api.example.org/v1",
    ],
)
def test_allowed_hosts_are_fetched(url: str) -> None:
    fetch, recorder = fetcher(ok)
    assert fetch(url).startswith("hello from")
    assert len(recorder.requests) == 1
    assert recorder.requests[0].method == "GET"


def test_the_run_trace_is_propagated_on_every_hop() -> None:
    def hop(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/a":
            return httpx2.Response(302, headers={"location": "/b"})
        return ok(request)

    fetch, recorder = fetcher(hop)
    fetch("https://example.com/a")
    headers = [r.headers["traceparent"] for r in recorder.requests]
    assert headers == [f"00-{trace_id('run_1')}-{headers[0].split('-')[2]}-01"] * 2


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com/",
        "https://example.com.evil.com/",
        "https://evilexample.com/",
        "https://sub.example.com/",  # exact entries do not cover subdomains
        "https://example.org/",  # a wildcard does not cover the domain itself
        "https://evilexample.org/",
        "https://127.0.0.1/",
        "http://[::1]/",
    ],
)
def test_other_hosts_are_refused_before_any_request(url: str) -> None:
    fetch, recorder = fetcher(ok)
    error = refused(fetch, url, "not on the allowlist")
    assert error.error_class == "tool_error"
    assert "example.com" in error.message  # the model is told what is allowed
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("https://user:pass@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("/relative/path", "only http and https|needs a host"),
        ("example.com/no-scheme", "only http and https|needs a host"),
        ("http://[::1", "invalid URL"),
        ("https:///nohost", "needs a host|invalid URL"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    fetch, recorder = fetcher(ok)
    refused(fetch, url, match)
    assert recorder.requests == []


def test_idn_hosts_match_their_punycode() -> None:
    fetch, _ = fetcher(ok, allowed_hosts=["bücher.de"])
    assert fetch("https://xn--bcher-kva.de/").startswith("hello")
    assert fetch("https://BÜCHER.de/").startswith("hello")


# -- redirects -----------------------------------------------------------------------


def redirecting(chain: dict[str, str]) -> Handler:
    def handle(request: httpx2.Request) -> httpx2.Response:
        target = chain.get(str(request.url))
        if target is not None:
            return httpx2.Response(302, headers={"location": target})
        return ok(request)

    return handle


def test_redirects_to_allowed_hosts_are_followed() -> None:
    fetch, recorder = fetcher(
        redirecting(
            {
                "https://example.com/start": "https://api.example.org/next",
                "https://api.example.org/next": "/final",  # relative
            }
        )
    )
    assert fetch("https://example.com/start") == "hello from api.example.org/final"
    assert recorder.urls == [
        "https://example.com/start",
        "https://api.example.org/next",
        "https://api.example.org/final",
    ]


def test_a_redirect_to_another_host_is_refused_and_not_requested() -> None:
    fetch, recorder = fetcher(redirecting({"https://example.com/": "https://evil.com/steal"}))
    error = refused(fetch, "https://example.com/", "redirect to host 'evil.com' refused")
    assert "not on the allowlist" in error.message
    assert recorder.urls == ["https://example.com/"]


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "https://user:pw@example.com/", "ftp://example.com/"],
)
def test_a_redirect_to_a_refused_url_is_refused(location: str) -> None:
    fetch, recorder = fetcher(redirecting({"https://example.com/": location}))
    refused(fetch, "https://example.com/", "redirect to")
    assert len(recorder.requests) == 1


def chain_of(length: int) -> dict[str, str]:
    return {f"https://example.com/{i}": f"https://example.com/{i + 1}" for i in range(length)}


def test_five_redirects_are_followed() -> None:
    fetch, recorder = fetcher(redirecting(chain_of(MAX_REDIRECTS)))
    assert fetch("https://example.com/0") == f"hello from example.com/{MAX_REDIRECTS}"
    assert len(recorder.requests) == MAX_REDIRECTS + 1


def test_a_sixth_redirect_is_too_many() -> None:
    fetch, recorder = fetcher(redirecting(chain_of(100)))
    refused(fetch, "https://example.com/0", "more than 5 redirects")
    assert len(recorder.requests) == MAX_REDIRECTS + 1


def test_a_redirect_loop_stops() -> None:
    fetch, _ = fetcher(redirecting({"https://example.com/a": "/a"}))
    refused(fetch, "https://example.com/a", "redirects")


# -- size ----------------------------------------------------------------------------


def test_the_body_is_cut_at_max_bytes_with_a_marker() -> None:
    fetch, _ = fetcher(lambda r: httpx2.Response(200, text="x" * 5000), max_bytes=1000)
    assert fetch("https://example.com/") == "x" * 1000 + "\n[truncated at 1000 bytes]"


def test_a_body_of_exactly_max_bytes_is_whole() -> None:
    fetch, _ = fetcher(lambda r: httpx2.Response(200, text="x" * 1000), max_bytes=1000)
    assert fetch("https://example.com/") == "x" * 1000


def test_an_endless_stream_is_cut_without_reading_it_all() -> None:
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        while True:
            chunks_sent += 1
            yield b"y" * 1024

    fetch, _ = fetcher(lambda r: httpx2.Response(200, content=endless()), max_bytes=10_000)
    text = fetch("https://example.com/")
    assert text.endswith("[truncated at 10000 bytes]")
    assert text.split("\n")[0] == "y" * 10_000
    assert chunks_sent < 20


def test_a_character_split_by_the_cut_is_dropped() -> None:
    # a(1) é(2) a(1) é(2): the cut at 5 bytes falls inside the second "é"
    fetch, _ = fetcher(lambda r: httpx2.Response(200, text="aé" * 10), max_bytes=5)
    assert fetch("https://example.com/") == "aéa\n[truncated at 5 bytes]"


def test_the_declared_charset_is_used() -> None:
    body = "café".encode("latin-1")
    fetch, _ = fetcher(
        lambda r: httpx2.Response(
            200, content=body, headers={"content-type": "text/plain; charset=iso-8859-1"}
        )
    )
    assert fetch("https://example.com/") == "café"


def test_binary_content_is_refused() -> None:
    fetch, _ = fetcher(
        lambda r: httpx2.Response(200, content=b"\x89PNG", headers={"content-type": "image/png"})
    )
    refused(fetch, "https://example.com/logo.png", "binary")


# -- failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (403, False), (429, True), (503, True)]
)
def test_a_non_2xx_status_is_an_error_with_the_status(status: int, retryable: bool) -> None:
    fetch, _ = fetcher(lambda r: httpx2.Response(status, text="details here"))
    error = refused(fetch, "https://example.com/x", f"HTTP {status}")
    assert error.error_class == "http_status"
    assert error.retryable is retryable
    assert "details here" in error.message


def test_a_transport_timeout_is_a_retryable_error() -> None:
    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=request)

    fetch, _ = fetcher(slow)
    error = refused(fetch, "https://example.com/", "no complete answer")
    assert (error.error_class, error.retryable) == ("http_timeout", True)


def test_the_whole_fetch_has_one_deadline() -> None:
    async def hang(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(30)
        return ok(request)

    fetch, _ = fetcher(hang, timeout=0.2)
    started = time.monotonic()
    error = refused(fetch, "https://example.com/", "within 0.2 s")
    assert time.monotonic() - started < 5
    assert (error.error_class, error.retryable) == ("http_timeout", True)


def test_a_connection_failure_is_a_retryable_error() -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    fetch, _ = fetcher(down)
    error = refused(fetch, "https://example.com/", "connection refused")
    assert (error.error_class, error.retryable) == ("http_connection", True)


# -- a real server on loopback -------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hello":
            self._send(200, b"hello over loopback")
        elif self.path == "/big":
            self._send(200, b"z" * 50_000)
        elif self.path == "/redirect":
            self.send_response(301)
            self.send_header("Location", "/hello")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(2)
            with contextlib.suppress(OSError):  # the client gave up long ago
                self._send(200, b"late")
        else:
            self._send(500, b"boom")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def real_fetch(url: str, **options: Any) -> str:
    tool = http_fetch_tool(allowed_hosts=["127.0.0.1"], **options)
    result: str = asyncio.run(tool.function(url=url, context=CONTEXT))
    return result


def test_loopback_fetch(server: str) -> None:
    assert real_fetch(f"{server}/hello") == "hello over loopback"


def test_loopback_redirect(server: str) -> None:
    assert real_fetch(f"{server}/redirect") == "hello over loopback"


def test_loopback_redirect_to_another_host_is_refused(server: str) -> None:
    with pytest.raises(ToolError, match="'localhost' refused"):
        real_fetch(f"{server}/away")


def test_loopback_size_cap(server: str) -> None:
    text = real_fetch(f"{server}/big", max_bytes=1234)
    assert text == "z" * 1234 + "\n[truncated at 1234 bytes]"


def test_loopback_status(server: str) -> None:
    with pytest.raises(ToolError, match="HTTP 500") as caught:
        real_fetch(f"{server}/nothing")
    assert caught.value.retryable


def test_loopback_timeout(server: str) -> None:
    with pytest.raises(ToolError, match="no complete answer") as caught:
        real_fetch(f"{server}/slow", timeout=0.3)
    assert caught.value.retryable


def test_loopback_host_not_allowed(server: str) -> None:
    tool = http_fetch_tool(allowed_hosts=["example.com"])
    with pytest.raises(ToolError, match="not on the allowlist"):
        asyncio.run(tool.function(url=f"{server}/hello", context=CONTEXT))
