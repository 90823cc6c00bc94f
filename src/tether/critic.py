"""A deterministic critic: pure checks on a run's final answer, before it is accepted.

A :class:`Critic` is a tuple of checks and a revision budget. Each check looks at the
final output (text, or the validated structured output) and returns ``None`` when it
passes, or a precise problem the model can fix. When any check fails, the model is told
every problem and asked for a revision; after ``max_revisions`` failed revisions the run
ends ``needs_review`` with the verdicts. Every review is journaled (``OutputReviewed``)
and shown by ``tether show``. Checks are plain values, so they are unit-testable and
replay gives the same verdicts::

    critic = Critic(
        checks=(
            max_length(2000),
            forbidden(r"(?i)as an ai language model", "boilerplate"),
            cites(),
            required_fields("summary", "sources"),
        )
    )
    agent = Agent(name="researcher", model=..., critic=critic)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tether.errors import ConfigurationError
from tether.events import CheckResult

__all__ = [
    "Check",
    "Critic",
    "check",
    "cites",
    "forbidden",
    "max_length",
    "min_length",
    "required_fields",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One named, pure check: ``test(output)`` returns ``None`` (pass) or a problem."""

    name: str
    test: Callable[[Any], str | None]


def check(name: str) -> Callable[[Callable[[Any], str | None]], Check]:
    """Make a function a :class:`Check` named ``name`` (a decorator).

    The function gets the final output (a string, or the validated structured output)
    and returns ``None`` when it passes, or one sentence saying what to fix.
    """

    def make(test: Callable[[Any], str | None]) -> Check:
        return Check(name=name, test=test)

    return make


def _text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    try:
        return json.dumps(output, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(output)


def _fields(output: Any) -> Mapping[str, Any] | None:
    if isinstance(output, BaseModel):
        return output.model_dump()
    if isinstance(output, Mapping):
        return output
    if isinstance(output, str):
        try:
            parsed = json.loads(output)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    if hasattr(output, "__dataclass_fields__"):
        return {name: getattr(output, name) for name in output.__dataclass_fields__}
    return None


def max_length(chars: int) -> Check:
    """The answer is at most ``chars`` characters long."""
    if chars < 1:
        raise ConfigurationError("max_length needs at least 1 character")

    def test(output: Any) -> str | None:
        size = len(_text(output))
        return None if size <= chars else f"the answer is {size} characters; keep it under {chars}"

    return Check(name=f"max_length({chars})", test=test)


def min_length(chars: int) -> Check:
    """The answer is at least ``chars`` characters long (ignoring surrounding space)."""
    if chars < 1:
        raise ConfigurationError("min_length needs at least 1 character")

    def test(output: Any) -> str | None:
        size = len(_text(output).strip())
        return None if size >= chars else f"the answer is {size} characters; give at least {chars}"

    return Check(name=f"min_length({chars})", test=test)


def forbidden(pattern: str, reason: str) -> Check:
    """The answer does not match the regular expression ``pattern`` (``reason`` names it).

    Raises:
        ConfigurationError: ``pattern`` is not a valid regular expression.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigurationError(f"forbidden: invalid pattern {pattern!r}: {exc}") from None

    def test(output: Any) -> str | None:
        found = compiled.search(_text(output))
        if found is None:
            return None
        return f"remove {reason}: {found.group(0)[:80]!r}"

    return Check(name=f"forbidden({reason})", test=test)


def cites(pattern: str = r"\[\d+\]|https?://\S+", *, at_least: int = 1) -> Check:
    """The answer cites its sources: ``at_least`` matches of ``pattern``.

    The default pattern takes ``[1]``-style markers and URLs.
    """
    compiled = re.compile(pattern)

    def test(output: Any) -> str | None:
        count = len(compiled.findall(_text(output)))
        if count >= at_least:
            return None
        return f"cite your sources ({count} found, at least {at_least} needed, like [1] or a URL)"

    return Check(name="cites", test=test)


def required_fields(*names: str) -> Check:
    """The answer (a JSON object or structured output) has these fields, not empty."""
    if not names:
        raise ConfigurationError("required_fields needs at least one field name")

    def test(output: Any) -> str | None:
        fields = _fields(output)
        if fields is None:
            return "the answer must be a JSON object with the fields " + ", ".join(names)
        missing = [n for n in names if fields.get(n) in (None, "", [], {})]
        return None if not missing else f"fill in the missing fields: {', '.join(missing)}"

    return Check(name=f"required_fields({', '.join(names)})", test=test)


@dataclass(frozen=True, slots=True, kw_only=True)
class Critic:
    """Checks a final answer must pass, and how many revisions the model gets.

    Raises:
        ConfigurationError: No checks, two checks with one name, or a negative
            ``max_revisions``.
    """

    checks: tuple[Check, ...]
    max_revisions: int = 2
    """Failed revisions after which the run ends ``needs_review``. Default 2."""
    _names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        checks = tuple(self.checks)
        if not checks:
            raise ConfigurationError("a Critic needs at least one check")
        names = [c.name for c in checks]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"check names must be unique: {names}")
        if self.max_revisions < 0:
            raise ConfigurationError("max_revisions must be 0 or more")
        object.__setattr__(self, "checks", checks)
        object.__setattr__(self, "_names", frozenset(names))

    def review(self, output: Any) -> tuple[CheckResult, ...]:
        """Run every check on ``output``; a check that raises fails with its error."""
        results = []
        for one in self.checks:
            try:
                problem = one.test(output)
            except Exception as exc:  # a broken check must not pass silently
                problem = f"the check raised {type(exc).__name__}: {exc}"
            results.append(CheckResult(check=one.name, passed=problem is None, problem=problem))
        return tuple(results)


def feedback(results: tuple[CheckResult, ...]) -> str:
    """What the model is told when checks fail: every problem, one per line."""
    problems = [f"- {r.check}: {r.problem}" for r in results if not r.passed]
    return (
        "Your final answer did not pass these checks:\n"
        + "\n".join(problems)
        + "\nReply again with a corrected final answer."
    )
