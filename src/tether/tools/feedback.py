"""What the model is told when a tool call fails or its output is too long.

Every error result is a JSON object ``{"error": ..., "tool": ..., "message": ..., ...}``
of at most :data:`MAX_ERROR_BYTES` bytes, so a hostile or broken call can never flood the
context window.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_ERROR_BYTES", "describe_exception", "error_result", "truncate_output"]

MAX_ERROR_BYTES = 4096
"""Upper bound, in UTF-8 bytes, of any error result sent to a model."""

_ELLIPSIS = "…"


def error_result(error_class: str, message: str, *, tool: str, **details: Any) -> str:
    """Render a structured error for the model, at most :data:`MAX_ERROR_BYTES` bytes.

    Strings are clipped by their UTF-8 size and lone surrogates are replaced, so neither a
    long nor a malformed name, class or message can break the bound.

    Args:
        error_class: Stable identifier such as ``invalid_arguments`` or ``unknown_tool``.
        message: One human-readable sentence.
        tool: The tool name as the model wrote it (shortened if long).
        **details: Extra JSON-serialisable fields; dropped first when space runs out.
    """
    payload: dict[str, Any] = {
        "error": _clip(error_class, 100),
        "tool": _clip(tool, 200),
        "message": _clip(message, 1000),
    }
    payload.update(details)
    text = _dumps(payload)
    if text is not None and len(text.encode()) <= MAX_ERROR_BYTES:
        return text
    payload = {key: payload[key] for key in ("error", "tool", "message")}
    payload["details_truncated"] = True
    text = _dumps(payload)
    assert text is not None  # three clipped, clean strings always serialise
    return text


def _dumps(payload: dict[str, Any]) -> str | None:
    """JSON text of ``payload`` with lone surrogates replaced; ``None`` if it fails."""
    try:
        text = json.dumps(payload, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return None
    return text.encode("utf-8", "replace").decode()


def describe_exception(exc: BaseException) -> str:
    """``ExceptionType: text`` for the model; safe even when ``str(exc)`` raises."""
    try:
        text = str(exc)
    except Exception:
        text = "<the exception could not be turned into text>"
    return f"{type(exc).__name__}: {text}"


def truncate_output(text: str, max_chars: int) -> str:
    """Return ``text`` unchanged, or its first ``max_chars`` characters and a marker.

    The marker says how many characters were cut, so the model knows it saw a part.
    """
    if len(text) <= max_chars:
        return text
    return (
        f"{text[:max_chars]}\n[tether: output truncated, {len(text) - max_chars} more characters]"
    )


def _clip(text: str, limit: int) -> str:
    """Return ``text`` without lone surrogates, clipped to fit the error's byte budget.

    At most ``limit`` characters, and at most 2.4 bytes per character of ``limit`` once
    JSON-escaped, so the three clipped fields always fit :data:`MAX_ERROR_BYTES`.
    """
    clean = text.encode("utf-8", "replace").decode()
    budget = limit * 6 // 10 if limit >= 10 else limit
    escaped = json.dumps(clean, ensure_ascii=False)
    if len(clean) <= limit and len(escaped.encode()) <= budget * 4:
        return clean
    kept = clean[: limit - 1]
    while kept and len(json.dumps(kept, ensure_ascii=False).encode()) > budget * 4 - 4:
        kept = kept[: len(kept) * 3 // 4]
    return kept + _ELLIPSIS
