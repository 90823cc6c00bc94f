"""The deterministic critic: pure checks, the revision loop, and the needs_review ending."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel
from rich.console import Console

from tether import Agent, RunStatus
from tether.cli.tree import run_tree
from tether.critic import (
    Critic,
    check,
    cites,
    forbidden,
    max_length,
    min_length,
    required_fields,
)
from tether.errors import ConfigurationError
from tether.events import OutputReviewed
from tether.messages import UserMessage
from tether.runtime import Tether
from tether.store import InMemoryStore
from tether.testing import ScriptedModel

pytestmark = pytest.mark.anyio


def test_each_check_passes_or_says_what_to_fix() -> None:
    assert max_length(5).test("hello") is None
    assert max_length(5).test("hello!") == "the answer is 6 characters; keep it under 5"
    assert min_length(3).test("  ab  ") == "the answer is 2 characters; give at least 3"
    banned = forbidden(r"(?i)as an ai", "boilerplate")
    assert banned.test("The sky is blue.") is None
    assert banned.test("As an AI, I think") == "remove boilerplate: 'As an AI'"
    assert cites().test("see [1]") is None and cites().test("https://a.b/c") is None
    assert "cite your sources (0 found" in (cites().test("trust me") or "")
    fields = required_fields("summary", "sources")
    assert fields.test('{"summary": "x", "sources": ["a"]}') is None
    assert fields.test({"summary": "x", "sources": []}) == "fill in the missing fields: sources"
    assert (
        fields.test("not json")
        == "the answer must be a JSON object with the fields summary, sources"
    )

    class Report(BaseModel):
        summary: str
        sources: list[str]

    assert fields.test(Report(summary="", sources=["a"])) == "fill in the missing fields: summary"


def test_custom_checks_and_broken_checks() -> None:
    @check("no_shouting")
    def no_shouting(output: object) -> str | None:
        return "do not shout" if str(output).isupper() else None

    @check("broken")
    def broken(output: object) -> str | None:
        raise RuntimeError("bug")

    critic = Critic(checks=(no_shouting, broken))
    results = critic.review("HELLO")
    assert [(r.check, r.passed) for r in results] == [("no_shouting", False), ("broken", False)]
    assert results[1].problem == "the check raised RuntimeError: bug"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Critic(checks=()),
        lambda: Critic(checks=(max_length(3), max_length(3))),
        lambda: Critic(checks=(max_length(3),), max_revisions=-1),
        lambda: max_length(0),
        lambda: forbidden("(", "bad"),
        lambda: required_fields(),
    ],
)
def test_bad_critics_are_refused(make: object) -> None:
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]


CRITIC = Critic(checks=(cites(), max_length(80)), max_revisions=2)


async def test_a_failed_review_gets_precise_feedback_and_a_revision() -> None:
    model = ScriptedModel(["The answer is 42.", "The answer is 42 [1]."], name="m")
    store = InMemoryStore()
    runtime = Tether(store=store)
    agent = Agent(name="a", model=model, critic=CRITIC)
    result = await runtime.run(agent, "why?")
    assert result.status is RunStatus.COMPLETED and result.output == "The answer is 42 [1]."
    feedback = [m for m in model.requests[1].messages if isinstance(m, UserMessage)][-1]
    assert "- cites: cite your sources (0 found" in feedback.content
    reviews = [e for e in await store.events(result.run_id) if isinstance(e, OutputReviewed)]
    assert [r.passed for r in reviews] == [False, True]
    assert [(c.check, c.passed) for c in reviews[0].results] == [
        ("cites", False),
        ("max_length(80)", True),
    ]
    replayed = await runtime.replay(result.run_id, agent=agent)
    assert replayed.output == result.output


async def test_after_max_revisions_the_run_ends_needs_review_with_the_verdicts() -> None:
    model = ScriptedModel(["no sources"] * 3, name="m")
    store = InMemoryStore()
    result = await Tether(store=store).run(Agent(name="a", model=model, critic=CRITIC), "why?")
    assert result.status is RunStatus.NEEDS_REVIEW
    assert result.error is not None and result.error.error_class == "critic_rejected"
    assert "still fails cites after 2 revision(s)" in result.error.message
    assert result.output == "no sources"
    assert len(model.requests) == 3
    events = await store.events(result.run_id)
    assert sum(isinstance(e, OutputReviewed) for e in events) == 3
    assert events[-1].kind == "run_finished"
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(run_tree(events))
    assert "critic: revise" in buffer.getvalue() and "✗ cites" in buffer.getvalue()
    assert "needs_review (critic_rejected)" in buffer.getvalue()


async def test_zero_revisions_stops_at_the_first_failure() -> None:
    critic = Critic(checks=(cites(),), max_revisions=0)
    model = ScriptedModel(["none"], name="m")
    result = await Tether(store=InMemoryStore()).run(
        Agent(name="a", model=model, critic=critic), "q"
    )
    assert result.status is RunStatus.NEEDS_REVIEW and len(model.requests) == 1
