"""From an untrusted :class:`~tether.messages.ToolCall` to validated arguments.

Order matters: the size cap comes before parsing (a 20 MB argument string is never
parsed), the name is matched exactly (``ADD``, or a look-alike with a Cyrillic letter,
never resolves to ``add``), JSON is parsed strictly (no ``NaN``, no duplicate keys),
and the pydantic model refuses missing, mistyped and extra fields. A rejection is a
value, not an exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tether.ids import call_digest
from tether.messages import ToolCall
from tether.tools.feedback import error_result
from tether.tools.tool import Tool

__all__ = ["Rejected", "Validated", "validate_call"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Validated:
    """A call whose arguments passed validation; safe to execute."""

    tool: Tool
    arguments: dict[str, Any]
    """Validated, coerced arguments, keyed by parameter name."""
    digest: str
    """:func:`~tether.ids.call_digest` of the tool name and canonical arguments."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A call refused before execution, with the error result for the model."""

    error_class: str
    """``arguments_too_large``, ``unknown_tool``, ``malformed_arguments`` or
    ``invalid_arguments``."""
    content: str
    """Structured error (JSON, at most 4 KiB) sent back to the model."""


def validate_call(
    call: ToolCall, tools: Mapping[str, Tool], *, max_argument_bytes: int
) -> Validated | Rejected:
    """Check one call against the run's tools. Never raises for bad input."""
    raw = call.arguments
    try:
        size = len(raw) if len(raw) > max_argument_bytes else len(raw.encode())
    except UnicodeEncodeError:  # a lone surrogate: not text any JSON parser would produce
        return _reject("malformed_arguments", "arguments are not valid UTF-8 text", call)
    if size > max_argument_bytes:
        return _reject(
            "arguments_too_large",
            f"arguments are {size} bytes; the limit is {max_argument_bytes} bytes",
            call,
        )
    target = tools.get(call.name)
    if target is None:
        return _reject(
            "unknown_tool",
            f"there is no tool named {call.name!r}; names are exact and case-sensitive",
            call,
            available=sorted(tools),
        )
    try:
        _parse_json_object(raw)
    except (ValueError, RecursionError) as exc:
        return _reject("malformed_arguments", f"arguments are not a JSON object: {exc}", call)
    try:
        # Strict JSON-mode validation: "2" is not an int and 1 is not a bool, while
        # conversions JSON itself implies (an ISO string to a datetime) still work.
        model = target.args_model.model_validate_json(raw if raw.strip() else "{}", strict=True)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        return _reject(
            "invalid_arguments",
            f"arguments do not match the schema of {target.name!r}",
            call,
            problems=[
                {"loc": ".".join(map(str, p["loc"])), "msg": p["msg"]} for p in problems[:20]
            ],
        )
    arguments = {**model.__dict__, **(model.model_extra or {})}  # extras: schema-only tools
    digest = call_digest(target.name, model.model_dump_json())
    return Validated(tool=target, arguments=arguments, digest=digest)


def _reject(error_class: str, message: str, call: ToolCall, **details: Any) -> Rejected:
    content = error_result(error_class, message, tool=call.name, **details)
    return Rejected(error_class=error_class, content=content)


def _parse_json_object(raw: str) -> dict[str, Any]:
    """Parse with the rules pydantic's parser does not enforce: no NaN, no duplicate keys."""
    if not raw.strip():
        return {}
    value = _DECODER.decode(raw)
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# Built once: json.loads() with hooks constructs a new decoder on every call.
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_keys,
)
