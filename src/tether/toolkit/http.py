"""``http_fetch``: HTTP GET against an allowlist of hosts, with bounded time and size.

Every URL the model gives, and every redirect target, is checked before it is requested:
scheme ``http`` or ``https``, no user name or password, and a host on the allowlist (an
exact host, or ``*.example.com`` for any subdomain of ``example.com``). At most
:data:`MAX_REDIRECTS` redirects are followed. The body is streamed and cut at
``max_bytes`` with a ``[truncated at N bytes]`` marker, so a huge or endless response
costs no more than that.

Failures the model sees (:class:`~tether.errors.ToolError`), by ``error_class``:

- ``tool_error``: the URL or a redirect was refused (the message says why), too many
  redirects, or a binary content type.
- ``http_status``: a response other than 2xx; the message has the status. Retryable for
  429 and 5xx.
- ``http_timeout``: no complete answer within ``timeout``. Retryable.
- ``http_connection``: the host could not be reached, or dropped the connection. Retryable.

The allowlist names hosts, not addresses: a name on it that resolves to a private
address is still fetched.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Collection

import httpx2

from tether.errors import ConfigurationError, ToolError
from tether.ids import traceparent
from tether.tools import RunContext, Tool, tool

__all__ = ["MAX_REDIRECTS", "http_fetch_tool"]

MAX_REDIRECTS = 5
"""Redirects followed for one fetch; one more is a failure."""
_BINARY_TYPES = ("image/", "audio/", "video/", "font/")
_BINARY_SUBTYPES = frozenset(
    {
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/wasm",
    }
)
_ERROR_SNIPPET_BYTES = 300


def http_fetch_tool(
    *,
    allowed_hosts: Collection[str],
    timeout: float = 10.0,
    max_bytes: int = 1_000_000,
    client: httpx2.AsyncClient | None = None,
) -> Tool:
    """Build the ``http_fetch`` tool (risk ``read``): GET one URL, return its body as text.

    Args:
        allowed_hosts: Hosts the tool may contact: exact names (``api.example.com``, an IP
            address such as ``127.0.0.1``) or ``*.example.com`` (any subdomain of
            ``example.com``, not ``example.com`` itself). Any port. Must not be empty.
        timeout: Seconds one fetch may take in all, redirects included. Default 10.
        max_bytes: Bytes of (decoded) body returned at most; the rest is cut and marked.
            Default 1,000,000.
        client: The client to send requests with (its transport, proxies, headers). It is
            not closed by the tool. Default: a new client for each fetch.

    Raises:
        ConfigurationError: The allowlist is empty or has an invalid entry, or ``timeout``
            or ``max_bytes`` is not positive.
    """
    if timeout <= 0:
        raise ConfigurationError("http_fetch_tool: timeout must be positive")
    if max_bytes <= 0:
        raise ConfigurationError("http_fetch_tool: max_bytes must be positive")
    hosts = _HostRules(allowed_hosts)
    description = (
        "Fetch a URL with HTTP GET and return the response body as text "
        f"(at most {max_bytes} bytes). Allowed hosts: {hosts.summary()}."
    )

    @tool(name="http_fetch", risk="read", description=description)
    async def http_fetch(url: str, context: RunContext) -> str:
        """Fetch a URL with HTTP GET.

        Args:
            url: Absolute http:// or https:// URL on an allowed host.
            context: The calling run (its trace is propagated as ``traceparent``).
        """
        first = hosts.check(url)
        headers = {"traceparent": traceparent(context.run_id)}
        try:
            async with asyncio.timeout(timeout):
                if client is not None:
                    return await _fetch(client, first, hosts, timeout, max_bytes, headers)
                async with httpx2.AsyncClient(follow_redirects=False) as own:
                    return await _fetch(own, first, hosts, timeout, max_bytes, headers)
        except (TimeoutError, httpx2.TimeoutException):
            raise ToolError(
                f"no complete answer from {first.host} within {timeout:g} s",
                error_class="http_timeout",
                retryable=True,
            ) from None
        except httpx2.TransportError as exc:
            raise ToolError(
                f"request to {first.host} failed: {type(exc).__name__}: {exc}",
                error_class="http_connection",
                retryable=True,
            ) from None

    return http_fetch


class _HostRules:
    """The allowlist: exact hosts and ``*.`` suffixes, normalised (lower case, IDNA)."""

    def __init__(self, entries: Collection[str]) -> None:
        if isinstance(entries, str):
            raise ConfigurationError("allowed_hosts must be a collection of hosts, not one string")
        self.exact: set[str] = set()
        self.suffixes: set[str] = set()
        for entry in entries:
            text = entry.strip()
            if text.startswith("*."):
                self.suffixes.add(_normal_host(text[2:], entry))
            else:
                self.exact.add(_normal_host(text, entry))
        if not self.exact and not self.suffixes:
            raise ConfigurationError("http_fetch_tool: allowed_hosts is empty; name the hosts")

    def summary(self) -> str:
        names = sorted(self.exact) + sorted(f"*.{suffix}" for suffix in self.suffixes)
        shown = ", ".join(names[:20])
        return shown if len(names) <= 20 else f"{shown} and {len(names) - 20} more"

    def allows(self, host: str) -> bool:
        return host in self.exact or any(host.endswith(f".{s}") for s in self.suffixes)

    def check(self, url: str | httpx2.URL, *, redirect: bool = False) -> httpx2.URL:
        """Return the parsed URL, or raise ``ToolError`` saying why it is refused."""
        what = "redirect to" if redirect else "URL"
        try:
            parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
        except (httpx2.InvalidURL, TypeError, ValueError) as exc:
            raise ToolError(f"invalid URL {str(url)[:200]!r}: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise ToolError(
                f"{what} {str(parsed)[:200]!r} refused: only http and https are allowed"
            )
        if parsed.userinfo:
            raise ToolError(f"{what} with a user name or password refused")
        if not parsed.raw_host:
            raise ToolError(f"{what} {str(parsed)[:200]!r} refused: it needs a host")
        host = _host_of(parsed)
        if not self.allows(host):
            raise ToolError(
                f"{what} host {host!r} refused: it is not on the allowlist ({self.summary()})"
            )
        return parsed


def _host_of(url: httpx2.URL) -> str:
    return url.raw_host.decode("ascii").lower().rstrip(".")


def _normal_host(text: str, entry: str) -> str:
    if not text or "*" in text or "/" in text or "@" in text:
        raise ConfigurationError(f"invalid allowed host {entry!r}: give a host or '*.domain'")
    try:
        parsed = httpx2.URL(f"http://{text}/")
    except httpx2.InvalidURL as exc:
        raise ConfigurationError(f"invalid allowed host {entry!r}: {exc}") from None
    if parsed.port is not None:
        raise ConfigurationError(f"invalid allowed host {entry!r}: give the host without a port")
    return _host_of(parsed)


async def _fetch(
    client: httpx2.AsyncClient,
    url: httpx2.URL,
    hosts: _HostRules,
    seconds: float,
    limit: int,
    headers: dict[str, str],
) -> str:
    for _ in range(MAX_REDIRECTS + 1):
        async with client.stream(
            "GET", url, follow_redirects=False, timeout=seconds, headers=headers
        ) as response:
            if response.is_redirect:
                url = hosts.check(_join(url, response.headers["location"]), redirect=True)
                continue
            if not response.is_success:
                raise await _status_error(response, url)
            _refuse_binary(response)
            body, truncated = await _read_capped(response, limit)
            return _decode(body, response.encoding, truncated, limit)
    raise ToolError(f"more than {MAX_REDIRECTS} redirects; stopped at {str(url)[:200]}")


def _join(url: httpx2.URL, location: str) -> httpx2.URL:
    try:
        return url.join(location)
    except httpx2.InvalidURL as exc:
        raise ToolError(f"invalid redirect location {location[:200]!r}: {exc}") from None


async def _status_error(response: httpx2.Response, url: httpx2.URL) -> ToolError:
    snippet, _ = await _read_capped(response, _ERROR_SNIPPET_BYTES)
    text = snippet.decode("utf-8", errors="replace").strip()
    status = response.status_code
    message = f"HTTP {status} {response.reason_phrase} from {str(url)[:200]}"
    return ToolError(
        f"{message}: {text}" if text else message,
        error_class="http_status",
        retryable=status == 429 or status >= 500,
    )


def _refuse_binary(response: httpx2.Response) -> None:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind.startswith(_BINARY_TYPES) or kind in _BINARY_SUBTYPES:
        raise ToolError(f"the response is binary ({kind}); http_fetch returns text only")


async def _read_capped(response: httpx2.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of the body; say whether more was there."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        room = limit - len(kept)
        if len(chunk) > room:
            kept += chunk[:room]
            return bytes(kept), True
        kept += chunk
    return bytes(kept), False


def _decode(body: bytes, encoding: str | None, truncated: bool, limit: int) -> str:
    try:
        decoder = codecs.getincrementaldecoder(encoding or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Not final when cut: a character split at the cut is dropped, not garbled.
    text = decoder.decode(body, final=not truncated)
    return f"{text}\n[truncated at {limit} bytes]" if truncated else text
