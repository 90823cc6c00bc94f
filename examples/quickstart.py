"""The quick start: a calculator agent driven by a scripted model (no network, no keys).

Run it with ``tether run examples/quickstart.py:agent "What is 1 + 2?"``.
"""

from tether import Agent, RunLimits, tool
from tether.testing import ScriptedModel, call


@tool(risk="read")
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


model = ScriptedModel([call("add", {"a": 1, "b": 2}), "The sum is 3."])
agent = Agent(name="calc", model=model, tools=[add], limits=RunLimits(max_steps=10))
