"""Secret redaction: API keys and tokens never reach a log line, a span or an export.

A :class:`Redactor` is a policy value. It replaces, with ``[REDACTED]``:

- secrets recognised by their shape: OpenAI (``sk-…``, ``sk-proj-…``) and Anthropic
  (``sk-ant-…``) keys, ``Bearer`` tokens, ``Authorization:`` header values, AWS access key
  ids (``AKIA…``), GitHub tokens (``ghp_…`` and kin), JSON Web Tokens, and the value of
  ``api_key=…`` / ``password: …`` style assignments;
- the values of fields a user marks secret (:attr:`Redactor.secret_fields`), wherever
  they appear as mapping keys or as ``"name": "value"`` in JSON text.

Plain prose is left alone: "token limit" or "the password policy" are not assignments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import ConfigurationError

__all__ = ["DEFAULT_REDACTOR", "REDACTED", "Redactor"]

REDACTED = "[REDACTED]"
"""What a secret is replaced with."""

_SHAPES = (
    r"\bsk-ant-[A-Za-z0-9_\-]{8,}",
    r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{16,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\beyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
)
# The secret is group 2: the key or header name and its separator stay readable.
_ASSIGNMENTS = (
    r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/\-]+=*)",
    r"(?i)(\bauthorization\s*[:=]\s*)(?!bearer\b)([^\s,;\"']+)",
    r"(?i)((?:api[_-]?key|access[_-]?token|auth[_-]?token|secret|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s,;\"'&]{4,})",
)
_TRIGGERS = (
    "sk-",
    "akia",
    "gh",
    "eyj",
    "bearer",
    "authorization",
    "key",
    "token",
    "secret",
    "pass",
)
"""Lower-case substrings without which no pattern can match (a cheap first test)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Redactor:
    """Replaces secrets in text and JSON-like values.

    Raises:
        ConfigurationError: A secret field name that is empty or not a string.
    """

    secret_fields: frozenset[str] = frozenset()
    """Field names (case-insensitive) whose values are always secret, such as
    ``"ssn"``. Default none."""
    _fields: frozenset[str] = field(init=False, repr=False)
    _json_fields: re.Pattern[str] | None = field(init=False, repr=False)
    _text_fields: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.secret_fields, str):
            raise ConfigurationError("secret_fields is a set of names, not one string")
        names = frozenset(self.secret_fields)
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ConfigurationError(
                    f"a secret field name must be a non-empty string: {name!r}"
                )
        object.__setattr__(self, "secret_fields", names)
        object.__setattr__(self, "_fields", frozenset(n.casefold() for n in names))
        pattern = text_pattern = None
        if names:
            alternatives = "|".join(re.escape(n) for n in sorted(names))
            pattern = re.compile(rf'(?i)("(?:{alternatives})"\s*:\s*)"(?:[^"\\]|\\.)*"')
            # ``ssn: 123-45`` or ``card=4111...`` in prose (a JSON value is handled above).
            text_pattern = re.compile(rf"(?i)(\b(?:{alternatives})\s*[:=]\s*)(?![\s\"])([^\s,;&]+)")
        object.__setattr__(self, "_json_fields", pattern)
        object.__setattr__(self, "_text_fields", text_pattern)

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``[REDACTED]``."""
        if not text:
            return text
        if self._json_fields is not None and self._text_fields is not None:
            text = self._json_fields.sub(rf'\1"{REDACTED}"', text)
            text = self._text_fields.sub(rf"\1{REDACTED}", text)
        lowered = text.casefold()
        if not any(trigger in lowered for trigger in _TRIGGERS):
            return text
        for shape in _SHAPE_PATTERNS:
            text = shape.sub(REDACTED, text)
        for assignment in _ASSIGNMENT_PATTERNS:
            text = assignment.sub(rf"\1{REDACTED}", text)
        return text

    def redact(self, value: Any) -> Any:
        """Return ``value`` with secrets replaced in every string, nested ones included.

        Mappings keep their keys; the value of a key named in :attr:`secret_fields` is
        replaced whatever it is. Lists and tuples keep their type; other values are
        returned as they are.
        """
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {
                key: REDACTED
                if isinstance(key, str) and key.casefold() in self._fields
                else self.redact(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.redact(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.redact(item) for item in value)
        return value


_SHAPE_PATTERNS = tuple(re.compile(p) for p in _SHAPES)
_ASSIGNMENT_PATTERNS = tuple(re.compile(p) for p in _ASSIGNMENTS)

DEFAULT_REDACTOR = Redactor()
"""The redactor used when none is given: secret shapes only, no extra fields."""
