"""The @tool decorator: schema, validation model, risk/effect and RunContext."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Literal
from uuid import UUID

import pytest
from pydantic import BaseModel

from tests.conftest import last_result, make_agent, tool_results
from tether import ConfigurationError, Effect, Risk, RunContext, RunStatus, tool
from tether.testing import ScriptedModel, call


def test_schema_from_hints_and_google_docstring() -> None:
    @tool
    def search(query: str, limit: int = 10, mode: Literal["fast", "deep"] = "fast") -> list[str]:
        """Search the catalogue.

        Longer explanation.

        Args:
            query: Words to look for.
            limit: Most results to return,
                counted after filtering.
            mode: How hard to look.

        Returns:
            Matching titles.
        """
        return []

    definition = search.definition
    assert definition.name == "search"
    assert definition.description == "Search the catalogue.\n\nLonger explanation."
    props = definition.parameters["properties"]
    assert props["query"]["description"] == "Words to look for."
    assert props["limit"]["description"] == "Most results to return, counted after filtering."
    assert props["limit"]["default"] == 10
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert definition.parameters["required"] == ["query"]
    assert definition.parameters["additionalProperties"] is False


class Address(BaseModel):
    city: str
    zip: str


def test_nested_models_are_validated() -> None:
    @tool
    def ship(to: Address, weight_kg: float) -> str:
        """Ship a parcel."""
        return f"{to.city}:{weight_kg}"

    partial = {"to": {"city": "Oslo"}, "weight_kg": 1}
    full = {"to": {"city": "Oslo", "zip": "0150"}, "weight_kg": 1.5}
    model = ScriptedModel([call("ship", partial), call("ship", full), "ok"])
    make_agent(model, [ship]).run_sync("go")
    first, second = tool_results(model, 2)[0], last_result(model)
    assert first.is_error and "to.zip" in first.content
    assert second.content == "Oslo:1.5"


def test_decorator_defaults() -> None:
    @tool
    def read_it() -> str:
        """Read."""
        return ""

    assert read_it.risk is Risk.READ and read_it.effect is Effect.READ and read_it.timeout is None

    @tool(risk="external")
    def send() -> str:
        """Send."""
        return ""

    assert send.effect is Effect.AT_MOST_ONCE, "side-effecting tools default to the safe choice"

    @tool(name="pay.v2", risk="irreversible", effect="idempotent", timeout=timedelta(seconds=3))
    def pay() -> str:
        """Pay."""
        return ""

    assert pay.name == "pay.v2" and pay.effect is Effect.IDEMPOTENT
    assert pay.timeout == timedelta(seconds=3)


def test_tools_stay_callable() -> None:
    @tool
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    assert double(4) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"risk": "dangerous"}, "invalid risk"),
        ({"effect": "twice"}, "invalid effect"),
        ({"risk": "write", "effect": "read"}, "cannot be 'read'"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"name": "has space"}, "invalid tool name"),
        ({"name": "x" * 65}, "invalid tool name"),
    ],
)
def test_bad_definitions_fail_clearly(kwargs, message: str) -> None:
    def f() -> str:
        """F."""
        return ""

    with pytest.raises(ConfigurationError, match=message):
        tool(**kwargs)(f)


def test_missing_hints_and_varargs_are_refused() -> None:
    def no_hint(x):  # type: ignore[no-untyped-def]
        return x

    def varargs(*xs: int) -> int:
        return 0

    with pytest.raises(ConfigurationError, match="needs a type hint"):
        tool(no_hint)
    with pytest.raises(ConfigurationError, match="named parameter"):
        tool(varargs)


def test_run_context_is_injected_and_hidden_from_the_schema() -> None:
    seen: list[RunContext] = []

    @tool(risk="write", effect="idempotent")
    def charge(ctx: RunContext, amount: int) -> str:
        """Charge."""
        seen.append(ctx)
        return "ok"

    assert "ctx" not in charge.definition.parameters["properties"]
    model = ScriptedModel([call("charge", {"amount": 5}), "done"])
    result = make_agent(model, [charge]).run_sync("go", user="alice")
    assert result.status is RunStatus.COMPLETED
    (ctx,) = seen
    assert ctx.run_id == result.run_id
    assert ctx.user == "alice"
    assert ctx.agent == "test"
    assert ctx.step == 2
    assert len(ctx.idempotency_key) == 64
    # The model cannot supply the context itself.
    model = ScriptedModel([call("charge", {"amount": 5, "ctx": {"user": "root"}}), "done"])
    make_agent(model, [charge]).run_sync("go")
    assert len(seen) == 1


def test_idempotency_key_is_stable_for_the_same_call() -> None:
    from tether.ids import call_digest, idempotency_key

    a = idempotency_key("run_1", call_digest("pay", {"a": 1, "b": 2}))
    b = idempotency_key("run_1", call_digest("pay", {"b": 2, "a": 1}))
    c = idempotency_key("run_2", call_digest("pay", {"a": 1, "b": 2}))
    assert a == b != c


def test_async_tools_work() -> None:
    @tool
    async def fetch(url: str) -> dict[str, str]:
        """Fetch."""
        return {"url": url}

    model = ScriptedModel([call("fetch", {"url": "u"}), "ok"])
    make_agent(model, [fetch]).run_sync("go")
    assert last_result(model).content == '{"url":"u"}'


def test_agent_rejects_plain_functions_and_duplicate_names() -> None:
    from tether import Agent

    def plain() -> str:
        return ""

    @tool
    def one() -> str:
        """One."""
        return ""

    with pytest.raises(ConfigurationError, match="not a Tool"):
        Agent(name="a", model=ScriptedModel([]), tools=[plain])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="two tools"):
        Agent(name="a", model=ScriptedModel([]), tools=[one, one])
    with pytest.raises(ConfigurationError, match="empty"):
        Agent(name=" ", model=ScriptedModel([]))


class Colour(Enum):
    RED = "red"


def test_json_native_conversions_still_work() -> None:
    seen = []

    @tool
    def schedule(at: datetime, ref: UUID, colour: Colour, ratio: float) -> str:
        """Schedule."""
        seen.append((at, ref, colour, ratio))
        return "ok"

    args = {
        "at": "2026-11-24T10:00:00Z",
        "ref": "12345678-1234-5678-1234-567812345678",
        "colour": "red",
        "ratio": 1,
    }
    model = ScriptedModel([call("schedule", args), "done"])
    make_agent(model, [schedule]).run_sync("go")
    ((at, ref, colour, ratio),) = seen
    assert at.year == 2026 and isinstance(ref, UUID) and colour is Colour.RED and ratio == 1.0
