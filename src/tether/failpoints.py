"""Named crash points for fault-injection tests.

Off unless the ``TETHER_FAILPOINTS`` environment variable names them, for example
``TETHER_FAILPOINTS=after_call_before_result:0.3,before_terminal_write:1``: when the code
reaches a named point, the process kills itself with ``SIGKILL`` with that probability
(default 1). ``TETHER_FAILPOINTS_SEED`` makes the draws repeatable. The variable is read
once, at import; a disabled failpoint costs one dictionary lookup.

Points: ``before_intent``, ``after_intent_before_call``, ``after_call_before_result``,
``after_result_before_next``, ``before_terminal_write``, ``during_lease_renew``.
"""

from __future__ import annotations

import os
import random
import signal

__all__ = ["POINTS", "failpoint", "parse_failpoints"]

POINTS = frozenset(
    {
        "before_intent",
        "after_intent_before_call",
        "after_call_before_result",
        "after_result_before_next",
        "after_budget_reserve",
        "before_terminal_write",
        "during_lease_renew",
    }
)
"""Every failpoint name the code reaches."""


def parse_failpoints(spec: str) -> dict[str, float]:
    """Parse ``name:probability,name`` into a dict; unknown names raise ``ValueError``."""
    points: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, probability = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(sorted(POINTS))}")
        value = float(probability) if probability else 1.0
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"failpoint {name!r}: probability must be within 0..1")
        points[name] = value
    return points


_ACTIVE = parse_failpoints(os.environ.get("TETHER_FAILPOINTS", ""))
_RANDOM = random.Random(os.environ.get("TETHER_FAILPOINTS_SEED"))


def _armed(name: str) -> None:
    probability = _ACTIVE.get(name)
    if probability is not None and _RANDOM.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)


def _disarmed(name: str) -> None:
    del name


failpoint = _armed if _ACTIVE else _disarmed
"""``failpoint(name)``: kill this process with ``SIGKILL`` if ``name`` is enabled and the
draw says so. A no-op function when ``TETHER_FAILPOINTS`` is empty."""
