"""The public test kit behaves as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tether import ModelError, RunLimits, RunStatus, ToolCall
from tether.models import ModelSettings
from tether.testing import FakeClock, FaultPlan, FunctionModel, ScriptedModel, call


def test_call_accepts_dicts_and_raw_strings() -> None:
    assert call("f", {"a": 1}).arguments == '{"a": 1}'
    assert call("f", "{oops").arguments == "{oops"
    assert call("f").arguments == "{}"
    assert call("f", id="x").id == "x"


@pytest.mark.anyio
async def test_scripted_model_plays_items_in_order_and_then_fails() -> None:
    boom = ModelError("rate limited", error_class="rate_limited", retryable=True)
    model = ScriptedModel(["text", call("f"), [call("f"), call("g")], boom])
    settings = ModelSettings()
    first = await model.request([], [], settings)
    assert first.text == "text" and first.model_name == "scripted"
    second = await model.request([], [], settings)
    assert second.tool_calls == (ToolCall(id="call_2_0", name="f", arguments="{}"),)
    third = await model.request([], [], settings)
    assert [c.id for c in third.tool_calls] == ["call_3_0", "call_3_1"]
    with pytest.raises(ModelError) as raised:
        await model.request([], [], settings)
    assert raised.value.retryable
    with pytest.raises(ModelError, match="4 responses and request 5"):
        await model.request([], [], settings)
    assert len(model.requests) == 5
    assert model.remaining == 0


def test_function_model_sees_the_conversation(add) -> None:
    def respond(messages, tools):
        if messages[-1].role == "tool":
            return f"result was {messages[-1].content}"
        return call("add", {"a": 20, "b": 22})

    from tether import Agent

    model = FunctionModel(respond)
    result = Agent(name="f", model=model, tools=[add]).run_sync("go")
    assert result.output == "result was 42"
    assert model.requests[0].tools[0].name == "add"


@pytest.mark.anyio
async def test_fake_clock() -> None:
    clock = FakeClock(datetime(2030, 5, 1, tzinfo=UTC))
    await clock.sleep(90)
    assert clock.now() == datetime(2030, 5, 1, 0, 1, 30, tzinfo=UTC)
    clock.advance(timedelta(hours=1))
    assert clock.monotonic() == 3690
    assert clock.sleeps == [90]
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FakeClock(datetime(2030, 1, 1))


def test_fault_plan_counts_and_limits_faults(add, counter) -> None:
    from tether import Agent

    plan = FaultPlan().raise_on("add", TimeoutError("slow"), times=2)
    script = [call("add", {"a": 1, "b": i}) for i in range(3)] + ["done"]
    agent = Agent(name="f", model=ScriptedModel(script), tools=plan.apply([add]))
    result = agent.run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert plan.invocations("add") == 3
    assert plan.real_calls("add") == 1
    assert len(counter) == 1
    with pytest.raises(ValueError):
        FaultPlan().hang_on("x", times=0)


def test_fault_plan_refuses_to_hang_an_uninterruptible_tool(add) -> None:
    with pytest.raises(ValueError, match="without a timeout"):
        FaultPlan().hang_on("add").apply([add])


def test_fault_plan_keeps_sync_tools_sync_and_can_return_none(add) -> None:
    (wrapped,) = FaultPlan().garbage_on("add", None).apply([add])
    assert not wrapped.is_async
    assert wrapped.function(a=1, b=2) is None


def test_fault_plan_leaves_other_tools_alone(add) -> None:
    plan = FaultPlan().hang_on("other")
    assert plan.apply([add]) == [add]


def test_run_limits_validation() -> None:
    from tether import ConfigurationError

    for bad in (
        {"max_steps": 0},
        {"max_duration": timedelta(0)},
        {"max_repeats": -1},
        {"max_parallel_tool_calls": 0},
    ):
        with pytest.raises(ConfigurationError):
            RunLimits(**bad)


def test_run_limits_normalise_units() -> None:
    from decimal import Decimal

    from tether import ConfigurationError

    assert RunLimits(max_duration=1.5).max_duration == timedelta(seconds=1.5)
    assert RunLimits(max_cost_usd=0.1).max_cost_usd == Decimal("0.1")
    assert RunLimits(max_cost_usd="2.50").max_cost_usd == Decimal("2.50")
    for bad in ({"max_duration": "soon"}, {"max_cost_usd": "lots"}, {"max_cost_usd": float("nan")}):
        with pytest.raises(ConfigurationError):
            RunLimits(**bad)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 1e20])
def test_run_limits_refuse_unusable_durations(seconds: float) -> None:
    from tether import ConfigurationError

    with pytest.raises(ConfigurationError):
        RunLimits(max_duration=seconds)
