"""What the model is told when a tool call fails or its output is too long.

Every error result is a JSON object ``{"error": ..., "tool": ..., "message": ..., ...}``
of at most :data:`MAX_ERROR_BYTES` bytes, so a hostile or broken call can never flood the
context window.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_ERROR_BYTES", "error_result", "truncate_output"]

MAX_ERROR_BYTES = 4096
"""Upper bound, in UTF-8 bytes, of any error result sent to a model."""

_ELLIPSIS = "…"


def error_result(error_class: str, message: str, *, tool: str, **details: Any) -> str:
    """Render a structured error for the model, at most :data:`MAX_ERROR_BYTES` bytes.

    Args:
        error_class: Stable identifier such as ``invalid_arguments`` or ``unknown_tool``.
        message: One human-readable sentence.
        tool: The tool name as the model wrote it (shortened if long).
        **details: Extra JSON-serialisable fields; dropped first when space runs out.
    """
    payload: dict[str, Any] = {
        "error": error_class,
        "tool": _clip(tool, 200),
        "message": _clip(message, 1000),
    }
    payload.update(details)
    text = json.dumps(payload, ensure_ascii=False, default=str)
    if len(text.encode()) <= MAX_ERROR_BYTES:
        return text
    payload = {key: payload[key] for key in ("error", "tool", "message")}
    payload["details_truncated"] = True
    return json.dumps(payload, ensure_ascii=False)


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
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS
