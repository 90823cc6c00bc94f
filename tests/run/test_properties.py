"""Property: whatever a model sends, the run ends terminal, within its limits, and no tool
ever runs with invalid arguments."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import (
    Agent,
    AssistantMessage,
    ModelError,
    RunFinished,
    RunLimits,
    ToolResultMessage,
    tool,
)
from tether.testing import ScriptedModel, call

ints = st.integers(min_value=-(10**6), max_value=10**6)
junk = st.one_of(
    st.text(max_size=20),
    st.floats(allow_nan=False),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.booleans(),
)
valid_call = st.builds(lambda a, b: call("add", {"a": a, "b": b}), ints, ints)
wrong_args = st.builds(
    lambda a, b, extra: call("add", {"a": a, "b": b, **extra}),
    st.one_of(ints, junk),
    st.one_of(ints, junk),
    st.dictionaries(st.sampled_from(["c", "d", "a"]), junk, max_size=2),
)
malformed = st.builds(lambda raw: call("add", raw), st.text(max_size=40))
unknown = st.builds(
    lambda name: call(name, {"a": 1, "b": 2}),
    st.sampled_from(["ADD", "аdd", "sub", "", "add\x00", "add "]),
)
one_call = st.one_of(valid_call, wrong_args, malformed, unknown)
item = st.one_of(
    one_call,
    st.lists(one_call, min_size=1, max_size=5),
    st.text(max_size=30),
    st.builds(lambda m: ModelError(m), st.text(max_size=10)),
)
limits = st.builds(
    RunLimits,
    max_steps=st.integers(min_value=1, max_value=25),
    max_tool_calls=st.one_of(st.none(), st.integers(min_value=1, max_value=15)),
    max_consecutive_errors=st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
    max_repeats=st.integers(min_value=0, max_value=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(item, max_size=30), run_limits=limits)
def test_any_script_ends_terminal_within_limits(script: list[Any], run_limits: RunLimits) -> None:
    received: list[tuple[Any, Any]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        received.append((a, b))
        return a + b

    model = ScriptedModel(script)
    agent = Agent(name="p", model=model, tools=[add], limits=run_limits)
    events: list[Any] = []
    result = agent.run_sync("go", subscribers=[events.append])

    assert result.status.is_terminal
    assert result.steps <= (run_limits.max_steps or 10**9)
    if run_limits.max_tool_calls is not None:
        assert result.tool_calls <= run_limits.max_tool_calls
    assert all(type(a) is int and type(b) is int for a, b in received)
    assert isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    assert events[-1].status is result.status
    # No tool call in the history lacks exactly one result.
    calls = [c.id for m in result.messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    results = [m.call_id for m in result.messages if isinstance(m, ToolResultMessage)]
    assert sorted(calls) == sorted(results)
    for message in result.messages:
        if isinstance(message, ToolResultMessage) and message.is_error:
            assert len(message.content.encode()) <= 4096 + 200  # error + a repeat note
    started = [e for e in events if e.kind == "tool_call_started"]
    assert len(started) == len(received), "a function runs only after its started event"
