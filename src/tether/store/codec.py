"""The compact journal encoding durable stores write in their ``body`` column.

A body is a JSON array of an event's fields in declaration order, without ``run_id`` and
``kind`` (the store keeps those as columns). Nested values keep pydantic's JSON form minus
their default fields, and timezone-aware datetimes become integer microseconds since the
Unix epoch. :func:`decode_event` rebuilds the event and validates it as
:func:`~tether.events.event_from_json` does, so ``decode_event(encode_event(e)) == e``.

A 9-step run journals about 1.6 KB this way instead of 4 KB of plain JSON.

Compatibility rule, pinned by a test: a body is positional, so a new event field must
go *last* and have a default (old bodies are shorter and get the default); renaming,
reordering or removing a field needs a migration of the journal.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_json

from tether.events import Event

__all__ = ["decode_event", "encode_event", "event_fields"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = frozenset({"run_id", "kind"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    fields: tuple[str, ...]
    """Body positions: the event's fields in declaration order, minus the columns."""
    times: frozenset[str]
    """Fields typed ``datetime``: written as integer microseconds when tz-aware."""
    defaults: dict[str, Any]
    """JSON form of each field's default, for fields that have one."""
    adapter: TypeAdapter[Any]
    """The event class's own adapter (cheaper than dispatching on the ``Event`` union)."""


def _default(field: dataclasses.Field[Any]) -> Any:
    """A field's default value (made by its factory if it has one), or ``MISSING``."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _layouts() -> dict[str, _Layout]:
    layouts: dict[str, _Layout] = {}
    for cls in typing.get_args(Event):
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _COLUMNS)
        kind = next(f.default for f in dataclasses.fields(cls) if f.name == "kind")
        defaults = {
            f.name: TypeAdapter(hints[f.name]).dump_python(
                _default(f), mode="json", exclude_defaults=True
            )
            for f in dataclasses.fields(cls)
            if f.name not in _COLUMNS and _default(f) is not dataclasses.MISSING
        }
        layouts[str(kind)] = _Layout(
            fields=names,
            times=frozenset(n for n in names if hints[n] is datetime),
            defaults=defaults,
            adapter=TypeAdapter(cls),
        )
    return layouts


_LAYOUTS = _layouts()


def event_fields(kind: str) -> tuple[str, ...]:
    """Return the body positions of events of ``kind``: field names, in order.

    Raises:
        KeyError: ``kind`` is not an event kind.
    """
    return _LAYOUTS[kind].fields


def encode_event(event: Event) -> str:
    """Return the compact body of ``event`` (JSON text; ``run_id`` and ``kind`` omitted)."""
    layout = _LAYOUTS[event.kind]
    # Without defaults: nested values shrink, and a top-level field missing here is at its
    # default, so trailing ones can be left out and restored by the decoder.
    lean = layout.adapter.dump_python(event, mode="json", exclude_defaults=True)
    count = len(layout.fields)
    while count and layout.fields[count - 1] not in lean:
        count -= 1
    values: list[Any] = []
    for name in layout.fields[:count]:
        value = getattr(event, name)
        if name in layout.times and value.utcoffset() is not None:
            values.append((value - _EPOCH) // _MICROSECOND)
        else:
            values.append(lean[name] if name in lean else layout.defaults[name])
    # The values are JSON-ready (pydantic's JSON mode: no NaN, no Decimal, no datetime), so
    # pydantic-core writes the same compact UTF-8 JSON as json.dumps, several times faster.
    return to_json(values).decode()


def decode_event(run_id: str, kind: str, body: str | bytes) -> Event:
    """Rebuild the event a body was encoded from, validating it like ``event_from_json``.

    Datetimes stored as microseconds come back in UTC (equal to the original instant).

    Raises:
        ValueError: The body does not describe a valid event of ``kind`` (pydantic's
            ``ValidationError`` is a ``ValueError``).
    """
    layout = _LAYOUTS.get(kind)
    if layout is None:
        raise ValueError(f"unknown event kind {kind!r}")
    values = json.loads(body)
    if not isinstance(values, list) or len(values) > len(layout.fields):
        raise ValueError(f"malformed {kind} body: {body!r}")
    data: dict[str, Any] = dict(zip(layout.fields, values, strict=False))
    for name in layout.times:
        if type(data.get(name)) is int:  # bool is an int too, never a time
            data[name] = _EPOCH + data[name] * _MICROSECOND
    data["run_id"] = run_id
    data["kind"] = kind
    event: Event = layout.adapter.validate_python(data)
    return event
