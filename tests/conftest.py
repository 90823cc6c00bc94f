from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import pytest

from tether import Agent, RunLimits, ToolResultMessage, tool
from tether.testing import ScriptedModel


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``local_model`` need llama-cpp-python: skipped without it, except in CI.

    ``make setup`` installs it, so in CI (``CI`` set) its absence is a failure, never a
    silent skip.
    """
    if item.get_closest_marker("local_model") is None:
        return
    if importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python is not installed (make setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def isolated_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made without an explicit store stay in memory (tests never write ./.tether)."""
    monkeypatch.setenv("TETHER_STORE", "memory://")
    monkeypatch.delenv("TETHER_FAILPOINTS", raising=False)


class Counter:
    """Counts calls of the test tools, so tests can assert whether a function ran."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.calls)


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def add(counter: Counter):
    @tool(risk="read")
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: First addend.
            b: Second addend.
        """
        counter.calls.append({"a": a, "b": b})
        return a + b

    return add


def make_agent(model: ScriptedModel, tools: Sequence[Any], **limits: Any) -> Agent[str]:
    return Agent(name="test", model=model, tools=list(tools), limits=RunLimits(**limits))


def tool_results(model: ScriptedModel, request: int) -> list[ToolResultMessage]:
    """Tool results the model saw in request number ``request`` (1-based)."""
    messages = model.requests[request - 1].messages
    return [m for m in messages if isinstance(m, ToolResultMessage)]


def last_result(model: ScriptedModel) -> ToolResultMessage:
    return tool_results(model, len(model.requests))[-1]


def error_of(result: ToolResultMessage) -> dict[str, Any]:
    assert result.is_error, result
    assert len(result.content.encode()) <= 4096
    payload: dict[str, Any] = json.loads(result.content)
    return payload
