"""Every status the loop can produce today, each from a test."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.conftest import Counter, make_agent
from tether import (
    Agent,
    ModelError,
    ModelResponse,
    RunLimits,
    RunStatus,
    Tether,
    Usage,
    tool,
)
from tether.testing import FakeClock, FunctionModel, ScriptedModel, call


def test_completed(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", {"a": 2, "b": 5}), "7"])
    result = make_agent(model, [add]).run_sync("2+5?")
    assert result.status is RunStatus.COMPLETED
    assert result.output == "7"
    assert counter.calls == [{"a": 2, "b": 5}]


def test_max_steps_keeps_history_and_partial_output(add, counter: Counter) -> None:
    script = [
        ModelResponse(text="Working on it.", tool_calls=(call("add", {"a": i, "b": 1}),))
        for i in range(10)
    ]
    model = ScriptedModel(script)
    result = make_agent(model, [add], max_steps=4).run_sync("count")
    assert result.status is RunStatus.MAX_STEPS
    assert result.steps == 4  # two responses and two tool calls
    assert len(counter) == 2
    assert result.output == "Working on it."
    assert result.error is not None and result.error.error_class == "max_steps"
    assert [m.role for m in result.messages].count("tool") == 2


def test_max_steps_refuses_a_batch_that_would_overshoot(add, counter: Counter) -> None:
    batch = [call("add", {"a": i, "b": 0}) for i in range(3)]
    model = ScriptedModel([batch, "done"])
    result = make_agent(model, [add], max_steps=3).run_sync("three at once")
    assert result.status is RunStatus.MAX_STEPS
    assert len(counter) == 0, "no call of a batch that would pass the cap may run"
    assert result.steps == 1
    # Every call in the history still has a result.
    tool_messages = [m for m in result.messages if m.role == "tool"]
    assert len(tool_messages) == 3 and all(m.is_error for m in tool_messages)


def test_timed_out_by_the_injected_clock(add) -> None:
    clock = FakeClock()

    def slow_model(messages, tools):
        clock.advance(timedelta(seconds=40))
        return call("add", {"a": 1, "b": len(messages)})

    agent = Agent(
        name="slow",
        model=FunctionModel(slow_model),
        tools=[add],
        limits=RunLimits(max_duration=timedelta(seconds=100)),
    )
    result = Tether(clock=clock).run_sync(agent, "go")
    assert result.status is RunStatus.TIMED_OUT
    assert result.error is not None and result.error.error_class == "max_duration"
    assert result.steps == 6  # 3 responses (40 s each) and their calls, then 120 s >= 100 s


@pytest.mark.anyio
async def test_timed_out_while_the_model_hangs() -> None:
    import asyncio

    async def hanging(messages, tools):
        await asyncio.Event().wait()

    agent = Agent(
        name="hang",
        model=FunctionModel(hanging),
        limits=RunLimits(max_duration=timedelta(milliseconds=50)),
    )
    result = await agent.run("hello")
    assert result.status is RunStatus.TIMED_OUT
    assert result.steps == 0


def test_token_limit(add, counter: Counter) -> None:
    usage = Usage(input_tokens=60, output_tokens=10)
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=(call("add", {"a": 1, "b": 1}),), usage=usage),
            ModelResponse(tool_calls=(call("add", {"a": 2, "b": 2}),), usage=usage),
            "never reached",
        ]
    )
    result = make_agent(model, [add], max_tokens=100).run_sync("go")
    assert result.status is RunStatus.TOKEN_LIMIT
    assert result.usage.total_tokens == 140
    assert len(counter) == 1, "the calls of the response that went over the cap never run"
    assert len(model.requests) == 2


def test_tool_call_limit(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", {"a": i, "b": 0}) for i in range(5)] + ["done"])
    result = make_agent(model, [add], max_tool_calls=3).run_sync("go")
    assert result.status is RunStatus.TOOL_CALL_LIMIT
    assert len(counter) == 3
    assert result.tool_calls == 3


def test_cost_cap_ends_budget_exceeded(add, counter: Counter) -> None:
    cost = Decimal("0.40")
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=(call("add", {"a": i, "b": 0}),), cost_usd=cost)
            for i in range(5)
        ]
    )
    result = make_agent(model, [add], max_cost_usd=Decimal("1.00")).run_sync("go")
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert result.cost_usd == Decimal("1.20")
    assert len(counter) == 2
    assert result.error is not None and result.error.error_class == "max_cost_usd"


def test_unknown_cost_with_a_cost_cap_is_refused(add, counter: Counter) -> None:
    model = ScriptedModel(
        [ModelResponse(tool_calls=(call("add", {"a": 1, "b": 0}),), cost_usd=None)]
    )
    result = make_agent(model, [add], max_cost_usd=Decimal("1")).run_sync("go")
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert result.cost_usd is None
    assert len(counter) == 0
    assert "cannot be enforced" in (result.error.message if result.error else "")


def test_unknown_cost_without_a_cap_is_reported_unknown() -> None:
    model = ScriptedModel([ModelResponse(text="hi", cost_usd=None)])
    result = make_agent(model, []).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert result.cost_usd is None


def test_failed_on_model_error() -> None:
    model = ScriptedModel([ModelError("provider said no", error_class="auth_failed")])
    result = make_agent(model, []).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.error_class == "auth_failed"
    assert result.error.message == "provider said no"


def test_failed_on_unexpected_model_exception() -> None:
    model = ScriptedModel([RuntimeError("adapter bug")])
    result = make_agent(model, []).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "model_error"
    assert "RuntimeError: adapter bug" in result.error.message


def test_running_out_of_script_is_a_model_error_not_a_hang(add) -> None:
    model = ScriptedModel([call("add", {"a": 1, "b": 2})])
    result = make_agent(model, [add]).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "script_exhausted"


def test_loop_detected(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", {"a": 1, "b": 2}) for _ in range(10)])
    result = make_agent(model, [add], max_repeats=2).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "loop_detected"
    assert len(counter) == 1, "repeats are answered from the first result"
    assert len(model.requests) == 4  # first call + 2 allowed repeats + the one that ends it


def test_too_many_consecutive_errors(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", "{not json") for _ in range(10)])
    result = make_agent(model, [add], max_consecutive_errors=3).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "too_many_errors"
    assert len(counter) == 0
    assert len(model.requests) == 3


def test_a_success_resets_the_consecutive_error_count(add) -> None:
    script = []
    for i in range(4):
        script += [call("add", "{bad"), call("add", {"a": i, "b": 0})]
    model = ScriptedModel([*script, "done"])
    result = make_agent(model, [add], max_consecutive_errors=2).run_sync("go")
    assert result.status is RunStatus.COMPLETED


def test_wrap_up_asks_for_a_final_answer_without_tools(add) -> None:
    model = ScriptedModel(
        [call("add", {"a": i, "b": 1}) for i in range(3)] + ["Best effort: 3 sums done."]
    )
    result = make_agent(model, [add], max_tool_calls=2, wrap_up=True).run_sync("go")
    assert result.status is RunStatus.TOOL_CALL_LIMIT
    assert result.output == "Best effort: 3 sums done."
    last_request = model.requests[-1]
    assert last_request.tools == ()
    assert "limit" in last_request.messages[-1].content  # type: ignore[union-attr]


def test_run_never_raises_for_a_tool_that_raises_base_exception_subclass() -> None:
    @tool
    def boom() -> str:
        """Raise."""
        raise ValueError("bad")

    model = ScriptedModel([call("boom"), "ok"])
    result = make_agent(model, [boom]).run_sync("go")
    assert result.status is RunStatus.COMPLETED


@pytest.mark.parametrize("status", list(RunStatus))
def test_terminal_flags(status: RunStatus) -> None:
    non_terminal = {"pending", "running", "waiting_approval", "waiting_user"}
    assert status.is_terminal is (status.value not in non_terminal)


def test_refused_batch_is_journaled_as_not_run(add, counter: Counter) -> None:
    seen = []
    batch = [call("add", {"a": i, "b": 0}) for i in range(3)]
    model = ScriptedModel([batch])
    result = make_agent(model, [add], max_tool_calls=2).run_sync("go", subscribers=[seen.append])
    assert result.status is RunStatus.TOOL_CALL_LIMIT
    finished = [e for e in seen if e.kind == "tool_call_finished"]
    assert [e.error_class for e in finished] == ["limit_reached"] * 3
    assert not any(e.executed for e in finished)
    assert len(counter) == 0


def test_always_duplicate_ids_ends_too_many_errors(add, counter: Counter) -> None:
    dup = [call("add", {"a": 1, "b": 1}, id="x"), call("add", {"a": 2, "b": 1}, id="x")]
    model = ScriptedModel([dup] * 10)
    result = make_agent(model, [add], max_consecutive_errors=3).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "too_many_errors"
    assert len(model.requests) == 3 and len(counter) == 0


def test_zero_cost_cap_admits_free_calls_only(add) -> None:
    free = ScriptedModel([call("add", {"a": 1, "b": 1}), "2"])
    assert make_agent(free, [add], max_cost_usd=Decimal(0)).run_sync("go").status is (
        RunStatus.COMPLETED
    )
    paid = ScriptedModel([ModelResponse(text="x", cost_usd=Decimal("0.01"))])
    result = make_agent(paid, [add], max_cost_usd=Decimal(0)).run_sync("go")
    assert result.status is RunStatus.BUDGET_EXCEEDED


def test_cost_cap_reached_exactly_stops_before_the_next_call(add) -> None:
    model = ScriptedModel(
        [ModelResponse(tool_calls=(call("add", {"a": 1, "b": 1}),), cost_usd=Decimal(1)), "2"]
    )
    result = make_agent(model, [add], max_cost_usd=Decimal(1)).run_sync("go")
    assert result.status is RunStatus.BUDGET_EXCEEDED
    assert len(model.requests) == 1


def test_wrap_up_output_is_validated_for_typed_agents(add) -> None:
    from pydantic import BaseModel

    class Summary(BaseModel):
        done: int

    model = ScriptedModel(
        [call("add", {"a": 1, "b": 1}), call("add", {"a": 2, "b": 1}), '{"done": 1}']
    )
    agent = Agent(
        name="t",
        model=model,
        tools=[add],
        output_type=Summary,
        limits=RunLimits(max_tool_calls=1, wrap_up=True),
    )
    result = agent.run_sync("go")
    assert result.status is RunStatus.TOOL_CALL_LIMIT
    assert result.output == Summary(done=1)


def test_wrap_up_is_skipped_when_tokens_leave_no_room(add) -> None:
    used = Usage(input_tokens=50, output_tokens=50)
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=(call("add", {"a": 1, "b": 1}),), usage=used),
            ModelResponse(tool_calls=(call("add", {"a": 2, "b": 1}),)),
            "wrap-up answer",
        ]
    )
    result = make_agent(model, [add], max_steps=2, max_tokens=100, wrap_up=True).run_sync("go")
    assert result.status is RunStatus.MAX_STEPS
    assert len(model.requests) == 1
    assert result.output is None


def test_model_settings_reach_the_model() -> None:
    from tether import ModelSettings

    model = ScriptedModel(["hi"])
    settings = ModelSettings(max_output_tokens=64, temperature=0.0)
    Agent(name="s", model=model, model_settings=settings).run_sync("go")
    assert model.requests[0].settings == settings


def test_unexpected_model_exception_is_logged_with_its_traceback(caplog) -> None:
    import logging

    model = ScriptedModel([KeyError("bug in adapter")])
    with caplog.at_level(logging.ERROR, logger="tether"):
        result = make_agent(model, []).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert "unexpected exception" in caplog.text
    assert caplog.records[-1].exc_info is not None


def test_a_model_returning_the_wrong_type_fails_the_run() -> None:
    async def wrong(messages, tools):
        return {"text": "not a ModelResponse"}

    class Wrong:
        name = "wrong"

        async def request(self, messages, tools, settings):
            return await wrong(messages, tools)

    result = Agent(name="w", model=Wrong()).run_sync("go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and "not ModelResponse" in result.error.message
