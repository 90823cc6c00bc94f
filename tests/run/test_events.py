"""Events: order, exactly one terminal event, JSON round trip, subscriber isolation."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from tests.conftest import make_agent
from tether import (
    InMemoryStore,
    ModelError,
    ModelResponse,
    RunFinished,
    RunStarted,
    RunStatus,
    Tether,
    Usage,
    event_from_json,
    event_to_json,
)
from tether.testing import ScriptedModel, call


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ([call("add", {"a": 1, "b": 2}), "3"], RunStatus.COMPLETED),
        ([ModelError("down")], RunStatus.FAILED),
        ([call("add", {"a": i, "b": 0}) for i in range(9)], RunStatus.MAX_STEPS),
    ],
)
def test_one_terminal_event_written_last(add, script, status: RunStatus) -> None:
    store = InMemoryStore()
    seen = []
    agent = make_agent(ScriptedModel(script), [add], max_steps=5)
    result = Tether(store=store, subscribers=[seen.append]).run_sync(agent, "go")
    assert result.status is status
    import asyncio

    journal = asyncio.run(store.events(result.run_id))
    assert list(journal) == seen
    assert isinstance(journal[0], RunStarted)
    assert isinstance(journal[-1], RunFinished)
    assert sum(isinstance(e, RunFinished) for e in journal) == 1
    assert journal[-1].status is status


def test_event_kinds_in_order(add) -> None:
    seen = []
    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "3"])
    make_agent(model, [add]).run_sync("go", subscribers=[seen.append])
    assert [e.kind for e in seen] == [
        "run_started",
        "model_responded",
        "tool_call_started",
        "tool_call_finished",
        "model_responded",
        "run_finished",
    ]
    assert seen[2].arguments == {"a": 1, "b": 2}


def test_refused_calls_have_no_started_event(add) -> None:
    seen = []
    model = ScriptedModel([call("add", {"a": "x"}), "ok"])
    make_agent(model, [add]).run_sync("go", subscribers=[seen.append])
    kinds = [e.kind for e in seen]
    assert "tool_call_started" not in kinds
    finished = next(e for e in seen if e.kind == "tool_call_finished")
    assert finished.executed is False and finished.error_class == "invalid_arguments"


def test_every_event_round_trips_through_json(add) -> None:
    seen = []
    model = ScriptedModel(
        [
            ModelResponse(
                text="thinking",
                tool_calls=(call("add", {"a": 1, "b": 2}, id="c1"),),
                usage=Usage(input_tokens=3, output_tokens=4),
                cost_usd=Decimal("0.0012"),
            ),
            [call("add", {"a": 1, "b": 2}, id="d"), call("add", {"a": 1, "b": 2}, id="d")],
            call("nope", "{"),
            "3",
        ]
    )
    make_agent(model, [add]).run_sync("go", subscribers=[seen.append])
    failing = ScriptedModel([call("add", {"a": 1, "b": 1}), ModelError("down", error_class="x")])
    make_agent(failing, [add]).run_sync("go", subscribers=[seen.append])
    limited = ScriptedModel([call("add", {"a": 1, "b": 1}), call("add", {"a": 2, "b": 1})])
    make_agent(limited, [add], max_tool_calls=1).run_sync("go", subscribers=[seen.append])
    kinds = {e.kind for e in seen}
    assert kinds == {
        "run_started",
        "model_responded",
        "model_failed",
        "response_rejected",
        "tool_call_started",
        "tool_call_finished",
        "limit_hit",
        "run_finished",
    }
    for event in seen:
        assert event_from_json(event_to_json(event)) == event


def test_a_failing_subscriber_does_not_break_the_run(add, caplog) -> None:
    def broken(event) -> None:
        raise RuntimeError("subscriber bug")

    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "3"])
    with caplog.at_level(logging.ERROR, logger="tether"):
        result = make_agent(model, [add]).run_sync("go", subscribers=[broken])
    assert result.status is RunStatus.COMPLETED
    assert "subscriber" in caplog.text


def test_run_ids_are_unique_and_journals_separate(add) -> None:
    store = InMemoryStore()
    runtime = Tether(store=store)
    ids = set()
    for _ in range(3):
        model = ScriptedModel([call("add", {"a": 1, "b": 2}), "3"])
        ids.add(runtime.run_sync(make_agent(model, [add]), "go").run_id)
    import asyncio

    assert len(ids) == 3
    assert {r.run_id for r in asyncio.run(store.list_runs())} == ids
