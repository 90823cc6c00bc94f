"""The README quick start, exactly as written."""

from __future__ import annotations


def test_quickstart_runs_as_documented() -> None:
    from tether import Agent, RunLimits, RunStatus, tool
    from tether.testing import ScriptedModel, call

    @tool(risk="read")
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "The sum is 3."])
    agent = Agent(name="calc", model=model, tools=[add], limits=RunLimits(max_steps=10))
    result = agent.run_sync("What is 1 + 2?")
    assert result.status is RunStatus.COMPLETED and result.output == "The sum is 3."

    assert result.steps == 3
    assert result.tool_calls == 1
    assert result.error is None
    assert result.cost_usd == 0
    assert result.started_at <= result.finished_at
    # The model saw the tool's result before answering.
    second = model.requests[1].messages
    assert second[-1].role == "tool" and second[-1].content == "3"
