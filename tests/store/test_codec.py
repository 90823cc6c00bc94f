"""The compact journal encoding: exact round trips, small bodies, a pinned layout."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.store.samples import AT, new_id, one_of_each, started, typical_journal
from tether.events import ContextCompacted, Event, RunStarted, ToolCallStarted, event_to_json
from tether.store.codec import decode_event, encode_event, event_fields

EVERY_KIND = {
    typing.get_args(typing.get_type_hints(cls)["kind"])[0] for cls in typing.get_args(Event)
}


def every_event() -> list[Event]:
    first = started(user="u", agent_ref="app:agent")
    return [first, *one_of_each(first.run_id)]


def test_samples_cover_every_kind() -> None:
    assert {e.kind for e in every_event()} == EVERY_KIND


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.kind)
def test_round_trip_is_exact(event: Event) -> None:
    body = encode_event(event)
    back = decode_event(event.run_id, event.kind, body)
    assert back == event
    assert type(back) is type(event)
    assert back.at.utcoffset() == timedelta(0)  # same instant, normalised to UTC
    # run_id and kind live in columns, not in the body.
    assert event.run_id not in body
    assert event.kind not in body
    assert len(body.encode()) < len(event_to_json(event)) * 0.75


def test_times_keep_their_microseconds_and_instant() -> None:
    for at in [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-11))),
        AT,
    ]:
        event = RunStarted(run_id="r", agent="a", task="t", user=None, at=at)
        body = encode_event(event)
        assert isinstance(json.loads(body)[3], int)
        assert decode_event("r", "run_started", body).at == at


def test_naive_times_are_kept_as_text() -> None:
    event = RunStarted(run_id="r", agent="a", task="t", user=None, at=datetime(2026, 1, 1, 1))
    back = decode_event("r", "run_started", encode_event(event))
    assert back == event and back.at.tzinfo is None


def test_trailing_defaults_are_left_out_and_restored() -> None:
    bare = started("r", agent_ref=None)
    micros = (AT - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert json.loads(encode_event(bare)) == ["agent", "task", None, micros]
    with_ref = started("r", agent_ref="m:a")
    assert json.loads(encode_event(with_ref))[-1] == "m:a"
    back = decode_event("r", "run_started", encode_event(bare))
    assert isinstance(back, RunStarted) and back.agent_ref is None


def test_a_factory_default_before_a_set_field_is_written_out() -> None:
    """``usage`` at its (factory-made) default, then a cost that is not the default."""
    event = ContextCompacted(
        run_id="r",
        step=3,
        folded=4,
        summary="s",
        tokens_before=10,
        tokens_after=5,
        at=AT,
        cost_usd=Decimal("0.002"),
    )
    body = json.loads(encode_event(event))
    assert body[-2:] == [{}, "0.002"]
    assert decode_event("r", "context_compacted", encode_event(event)) == event


def test_nested_defaults_are_left_out() -> None:
    body = json.loads(encode_event(one_of_each("r")[1]))  # text=None, cost None
    assert body[1] == {"cost_usd": None}


def test_bodies_are_compact_json_as_json_dumps_writes_it() -> None:
    # The encoder writes with pydantic-core; bodies must stay the text json.dumps wrote
    # (compact, UTF-8 unescaped), whatever the values: big ints, floats, NaN, controls.
    awkward = ToolCallStarted(
        run_id="r",
        step=1,
        call_id="c",
        tool="t",
        arguments={"f": 1e16, "g": 0.1, "n": float("nan"), "big": -(2**80), "s": 'é\u2028\x00"\\'},
        idempotency_key="k",
        effect="read",
        at=AT,
    )
    for event in [*every_event(), awkward]:
        body = encode_event(event)
        assert body == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    assert json.loads(encode_event(awkward))[3]["n"] is None  # NaN is not JSON


def test_layout_is_pinned() -> None:
    # Bodies are positional. If this fails, a change to an event would misread every
    # journal already written: add new fields LAST with a default, or write a migration.
    assert {kind: event_fields(kind) for kind in EVERY_KIND} == {
        "run_started": ("agent", "task", "user", "at", "agent_ref"),
        "model_responded": ("step", "response", "at"),
        "model_failed": ("step", "error_class", "message", "at"),
        "response_rejected": ("step", "reason", "message", "at"),
        "tool_call_started": (
            "step",
            "call_id",
            "tool",
            "arguments",
            "idempotency_key",
            "effect",
            "at",
        ),
        "tool_call_finished": (
            "step",
            "call_id",
            "tool",
            "content",
            "is_error",
            "error_class",
            "executed",
            "repeated",
            "at",
            "tier",
            "dedupe_of",
        ),
        "checkpoint_taken": ("step", "call_id", "tool", "risk", "at"),
        "tool_call_in_doubt": ("step", "call_id", "tool", "at"),
        "review_decided": ("step", "call_id", "decision", "result", "reviewer", "at"),
        "approval_requested": (
            "step",
            "call_id",
            "tool",
            "approval_id",
            "reasons",
            "expires_at",
            "at",
        ),
        "approval_decided": (
            "step",
            "call_id",
            "approval_id",
            "outcome",
            "decided_by",
            "comment",
            "at",
        ),
        "budget_exhausted": ("step", "attempt", "budget", "message", "at"),
        "budget_raised": ("step", "attempt", "budget", "raised_by", "at"),
        "output_reviewed": ("step", "passed", "results", "at"),
        "context_compacted": (
            "step",
            "folded",
            "summary",
            "tokens_before",
            "tokens_after",
            "at",
            "usage",
            "cost_usd",
        ),
        "limit_hit": ("limit", "status", "at"),
        "run_finished": ("status", "output", "error_class", "error_message", "at"),
    }


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("run_bogus", "[]"),
        ("model_failed", "{}"),
        ("model_failed", "[1, 2, 3, 4, 5]"),
        ("model_failed", '[1, "x"]'),
        ("limit_hit", '["max_steps", "not_a_status", 0]'),
        ("run_finished", "not json"),
    ],
)
def test_malformed_bodies_are_refused(kind: str, body: str) -> None:
    with pytest.raises(ValueError):
        decode_event("r", kind, body)


def body_bytes(events: list[Event]) -> int:
    return sum(len(encode_event(e).encode()) for e in events)


def test_a_nine_step_journal_fits_in_two_kilobytes() -> None:
    journal = typical_journal(4, run_id=new_id())
    kinds = [e.kind for e in journal]
    assert len(journal) == 15
    assert kinds.count("model_responded") == 5
    assert kinds.count("tool_call_started") == kinds.count("tool_call_finished") == 4
    assert body_bytes(journal) <= 2048
    plain = sum(len(event_to_json(e)) for e in journal)
    assert body_bytes(journal) < plain / 2


def test_journal_bytes_grow_linearly() -> None:
    per_step = {
        steps: (body_bytes(typical_journal(steps + 1)) - body_bytes(typical_journal(1))) / steps
        for steps in (10, 100, 1000)
    }
    # Deltas, not history: each step costs the same bytes, give or take its longer
    # step numbers and call ids.
    assert per_step[1000] < per_step[10] * 1.1
    assert per_step[1000] < 400
