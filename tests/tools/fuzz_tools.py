"""Representative tools for the bad-input fuzzing suite (``tests/tools/test_fuzz.py``).

Every tool records the arguments it receives in :data:`RECORDER`, so a test can compare
what a function got with what was validated, and prove that a refused call never reached
a function. The output tools return (or raise) whatever a test put in :data:`BOX`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from tether import RunContext, Tool, tool

__all__ = [
    "BOX",
    "LONG_NAME",
    "OUTPUT_TOOLS",
    "RECORDER",
    "TOOLS",
    "Address",
    "Box",
    "Colour",
    "Item",
    "Limits",
    "Point",
    "Recorder",
    "clamp",
]


@dataclass
class Recorder:
    """Every call a fuzz tool received: ``(tool name, keyword arguments)``, in order."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, name: str, arguments: dict[str, Any]) -> None:
        self.calls.append((name, dict(arguments)))

    def clear(self) -> None:
        self.calls.clear()


RECORDER = Recorder()


@dataclass
class Box:
    """What the output tools return, or raise when it is an exception."""

    value: Any = None


BOX = Box()


class Colour(Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street: Annotated[str, Field(min_length=1, max_length=40)]
    city: str
    geo: Point | None = None


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-[0-9]{4}$")]
    qty: Annotated[int, Field(ge=1, le=99)]
    weight_kg: Annotated[float, Field(gt=0, le=1000)]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_level: Annotated[int, Field(ge=0, le=10)]
    min_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    tag: Annotated[str, Field(min_length=1, max_length=12)] = "default"


# --- Argument tools: their JSON schema says exactly what they accept. -------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First addend.
        b: Second addend.
    """
    RECORDER.record("add", {"a": a, "b": b})
    return a + b


@tool
def tune(
    level: int,
    ratio: float,
    enabled: bool,
    label: str,
    offset: float = 0.0,
    limits: Limits | None = None,
) -> str:
    """Tune a device.

    Args:
        level: Level.
        ratio: A ratio.
        enabled: Whether the device is on.
        label: A label.
        offset: Free offset.
        limits: Constrained settings.
    """
    RECORDER.record(
        "tune",
        {
            "level": level,
            "ratio": ratio,
            "enabled": enabled,
            "label": label,
            "offset": offset,
            "limits": limits,
        },
    )
    return f"{label}:{level}"


@tool(risk="write", effect="idempotent")
def paint(
    colour: Colour,
    finish: Literal["matte", "gloss"] = "matte",
    layers: list[Colour] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Paint something.

    Args:
        colour: Main colour.
        finish: Surface finish.
        layers: Extra coats, in order.
        note: Free text.
    """
    RECORDER.record("paint", {"colour": colour, "finish": finish, "layers": layers, "note": note})
    return {"colour": colour.value, "coats": 1 + len(layers or [])}


@tool(risk="external")
def ship(to: Address, items: list[Item], express: bool = False) -> str:
    """Ship a parcel.

    Args:
        to: Destination.
        items: What goes in the parcel.
        express: Next-day delivery.
    """
    RECORDER.record("ship", {"to": to, "items": items, "express": express})
    return f"{to.city}:{len(items)}"


@tool(risk="write", effect="idempotent")
def book(
    ctx: RunContext,
    at: datetime,
    until: date | None = None,
    ref: UUID | None = None,
    seats: int = 1,
) -> str:
    """Book seats.

    Args:
        at: Start time.
        until: Last day, if any.
        ref: Booking reference.
        seats: How many seats.
    """
    RECORDER.record("book", {"ctx": ctx, "at": at, "until": until, "ref": ref, "seats": seats})
    return "booked"


@tool
async def lookup(
    keys: list[str], limit: int | None = None, weights: dict[str, int] | None = None
) -> list[str]:
    """Look keys up.

    Args:
        keys: Keys to look up.
        limit: Most results.
        weights: Optional weight per key.
    """
    RECORDER.record("lookup", {"keys": keys, "limit": limit, "weights": weights})
    return keys[:limit] if limit is not None and limit >= 0 else keys


@tool
def ping() -> str:
    """Answer pong."""
    RECORDER.record("ping", {})
    return "pong"


TOOLS: dict[str, Tool] = {t.name: t for t in (add, tune, paint, ship, book, lookup, ping)}
"""The argument tools by name."""


@tool
def clamp(
    level: Annotated[int, Field(ge=0, le=10)],
    label: Annotated[str, Field(max_length=8)] = "x",
) -> int:
    """Clamp a level; constraints declared on the parameters themselves.

    Args:
        level: From 0 to 10.
        label: At most 8 characters.
    """
    RECORDER.record("clamp", {"level": level, "label": label})
    return level


# --- Output tools: return or raise whatever is in BOX. ----------------------------------


def _produce() -> Any:
    if isinstance(BOX.value, BaseException):
        raise BOX.value
    return BOX.value


@tool
def emit() -> Any:
    """Return anything (no declared type, so no result validation)."""
    return _produce()


@tool
def emit_text() -> str:
    """Return text."""
    return _produce()  # type: ignore[no-any-return]


@tool
def emit_numbers() -> list[int]:
    """Return integers."""
    return _produce()  # type: ignore[no-any-return]


@tool
def emit_address() -> Address:
    """Return an address."""
    return _produce()  # type: ignore[no-any-return]


@tool
async def emit_async() -> Any:
    """Return anything, from a coroutine."""
    return _produce()


LONG_NAME = "very_long_tool_name_" + "x" * 44
"""A tool name of the maximum length, 64 characters."""


@tool(name=LONG_NAME)
def long_named() -> str:
    """Return text, under the longest name allowed."""
    return _produce()  # type: ignore[no-any-return]


OUTPUT_TOOLS: dict[str, Tool] = {
    t.name: t for t in (emit, emit_text, emit_numbers, emit_address, emit_async, long_named)
}
"""The output tools by name."""
