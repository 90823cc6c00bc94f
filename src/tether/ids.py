"""Identifiers and canonical forms: run ids, canonical JSON and call digests."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

__all__ = [
    "call_digest",
    "canonical_json",
    "idempotency_key",
    "new_run_id",
    "root_span_id",
    "trace_id",
    "traceparent",
]


def new_run_id() -> str:
    """Return a new random run id, such as ``run_3f2a...`` (32 hex digits after the prefix)."""
    return f"run_{uuid.uuid4().hex}"


def canonical_json(value: Any) -> str:
    """Serialise ``value`` to canonical JSON: sorted keys, no spaces, UTF-8 kept as is.

    Two argument dicts that differ only in key order give the same string.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_digest(tool_name: str, arguments: dict[str, Any] | str) -> str:
    """Return the sha256 hex digest of a tool name and its canonical arguments.

    ``arguments`` is a dict (serialised with :func:`canonical_json`) or JSON text that is
    already canonical, such as a validated model's ``model_dump_json()`` (fields in
    declaration order, defaults filled in). Used to recognise a repeated call.
    """
    text = arguments if isinstance(arguments, str) else canonical_json(arguments)
    payload = f"{tool_name}\x00{text}"
    return hashlib.sha256(payload.encode()).hexdigest()


def idempotency_key(run_id: str, digest: str) -> str:
    """Return the idempotency key of a call: sha256 of the run id and the call digest.

    The same call in the same run always has the same key, across retries and resumes.
    """
    return hashlib.sha256(f"{run_id}\x00{digest}".encode()).hexdigest()


def trace_id(run_id: str) -> str:
    """Return the run's OpenTelemetry trace id: 32 hex digits of sha256 of the run id.

    Derived, not stored: every process that touches the run (the first worker, the one
    that resumes it, a tool that propagates context) names the same trace.
    """
    digest = hashlib.sha256(f"trace\x00{run_id}".encode()).hexdigest()[:32]
    return digest if int(digest, 16) else "1".rjust(32, "0")  # all zeros is invalid


def root_span_id(run_id: str) -> str:
    """Return the id (16 hex digits) of the run's root span context.

    It is the parent of the run's ``invoke_agent`` spans and of the calls its tools make
    (their ``traceparent`` header).
    """
    digest = hashlib.sha256(f"span\x00{run_id}".encode()).hexdigest()[:16]
    return digest if int(digest, 16) else "1".rjust(16, "0")


def traceparent(run_id: str) -> str:
    """Return the W3C ``traceparent`` header that puts a call into the run's trace."""
    return f"00-{trace_id(run_id)}-{root_span_id(run_id)}-01"
