"""Argument checks shared by the resilience values; each raises a ``ValueError``."""

from __future__ import annotations

import math

__all__ = ["require_count", "require_number"]


def require_count(name: str, value: int, *, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not a ``bool``) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def require_number(name: str, value: float, *, minimum: float, exclusive: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number ``>= minimum``.

    With ``exclusive`` the number must be strictly greater than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum or (exclusive and value == minimum):
        bound = "greater than" if exclusive else "at least"
        raise ValueError(f"{name} must be finite and {bound} {minimum}, got {value}")
