"""Bounded context: long runs stay within budget, kept calls are untouched, resume is exact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from tether import Agent, InMemoryStore, RunLimits, RunStatus, Tether, tool
from tether.context import (
    ContextPolicy,
    DeterministicSummarizer,
    ModelSummarizer,
    Summary,
    Turn,
)
from tether.errors import ConfigurationError, ModelError
from tether.events import ContextCompacted, ModelResponded, ToolCallFinished
from tether.messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    Usage,
    UserMessage,
    estimate_tokens,
)
from tether.store import SqliteStore, Store
from tether.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

STEPS = 300
BUDGET = 3000


class Crash(BaseException):
    """Stands for the process dying."""


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return InMemoryStore()
    return SqliteStore(tmp_path / "journal.db")


@tool(risk="read")
def note(i: int, text: str) -> str:
    """Record note number i."""
    return f"noted {i}: " + "result text " * 20


def _last_noted(messages: Sequence[Message]) -> int:
    for message in reversed(messages):
        if isinstance(message, ToolResultMessage):
            return int(message.content.split(":")[0].removeprefix("noted "))
    return 0


def _next_call(messages: Sequence[Message], steps: int = STEPS) -> ToolCall | str:
    """A model that works through ``steps`` notes, then answers."""
    i = _last_noted(messages) + 1
    if i > steps:
        return "all notes taken"
    # Arguments with spacing and unicode a re-serialisation would change.
    arguments = '{"i": ' + str(i) + ',  "text": "note \\u00e9 ' + "x" * (40 + i % 7) + '"}'
    return ToolCall(id=f"c{i}", name="note", arguments=arguments)


def _agent(model: FunctionModel, policy: ContextPolicy) -> Agent[str]:
    limits = RunLimits(max_steps=2 * STEPS + 10, max_repeats=STEPS, max_duration=None)
    return Agent(
        name="notes",
        model=model,
        instructions="Take notes.",
        tools=[note],
        limits=limits,
        context=policy,
    )


def _assert_well_formed(messages: Sequence[Message], originals: dict[str, ToolCall]) -> None:
    """Head first, every kept call byte-identical and answered in the same request."""
    assert isinstance(messages[0], SystemMessage)
    assert messages[1] == UserMessage(content="take 300 notes")
    calls = [c for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    answered = {m.call_id for m in messages if isinstance(m, ToolResultMessage)}
    for kept in calls:
        assert kept.arguments == originals[kept.id].arguments  # byte-identical
        assert kept == originals[kept.id]
    assert answered == {c.id for c in calls}, "a call and its result are kept together"


async def _originals(store: Store, run_id: str) -> dict[str, ToolCall]:
    return {
        c.id: c
        for e in await store.events(run_id)
        if isinstance(e, ModelResponded)
        for c in e.response.tool_calls
    }


async def test_hundreds_of_steps_stay_within_the_token_budget(store: Store) -> None:
    model = FunctionModel(lambda messages, tools: _next_call(messages))
    policy = ContextPolicy(max_tokens=BUDGET, keep_turns=3)
    result = await Tether(store=store).run(_agent(model, policy), "take 300 notes")

    assert result.status is RunStatus.COMPLETED and result.output == "all notes taken"
    assert result.tool_calls == STEPS
    assert len(model.requests) == STEPS + 1
    originals = await _originals(store, result.run_id)
    sizes = [estimate_tokens(r.messages, r.tools) for r in model.requests]
    assert max(sizes) <= BUDGET
    full = estimate_tokens(result.messages, model.requests[-1].tools)
    assert full > 10 * BUDGET, "the test must need compaction"
    for request in model.requests:
        _assert_well_formed(request.messages, originals)
    last = model.requests[-1].messages
    kept_turns = sum(isinstance(m, AssistantMessage) for m in last)
    assert kept_turns >= 3
    compactions = [e for e in await store.events(result.run_id) if isinstance(e, ContextCompacted)]
    assert len(compactions) >= 5
    assert [c.folded for c in compactions] == sorted({c.folded for c in compactions})
    assert all(c.tokens_after <= BUDGET * 0.6 < c.tokens_before for c in compactions)
    # Every turn line of every summary names its calls with their arguments verbatim.
    for compaction in compactions:
        lines = [line for line in compaction.summary.splitlines() if line.startswith("- turn ")]
        assert lines and len(compaction.summary) <= BUDGET * 3 // 4
        for line in lines:
            number = int(line.split()[2].rstrip(":"))
            assert f"called note {originals[f'c{number}'].arguments};" in line


async def test_the_message_budget_bounds_every_request() -> None:
    model = FunctionModel(lambda messages, tools: _next_call(messages, 60))
    agent = _agent(model, ContextPolicy(max_messages=12, keep_turns=2))
    result = await Tether(store=InMemoryStore()).run(agent, "take 300 notes")
    assert result.status is RunStatus.COMPLETED
    assert max(len(r.messages) for r in model.requests) <= 12
    assert len(result.messages) > 100


async def test_resume_after_compaction_rebuilds_the_same_context(store: Store) -> None:
    """An interrupted run sends exactly the requests an uninterrupted one sends."""
    policy = ContextPolicy(max_tokens=BUDGET, keep_turns=3)
    whole = FunctionModel(lambda messages, tools: _next_call(messages))
    await Tether(store=InMemoryStore()).run(_agent(whole, policy), "take 300 notes")

    def crash_at_170(messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> object:
        if _last_noted(messages) + 1 == 170:
            raise Crash
        return _next_call(messages)

    first = FunctionModel(crash_at_170)
    seen: list[object] = []
    with pytest.raises(Crash):
        await Tether(store=store).run(
            _agent(first, policy), "take 300 notes", subscribers=[seen.append]
        )
    run_id = seen[0].run_id  # type: ignore[attr-defined]
    resumed = FunctionModel(lambda messages, tools: _next_call(messages))
    result = await Tether(store=store).resume(run_id, agent=_agent(resumed, policy))

    assert result.status is RunStatus.COMPLETED
    assert first.requests == whole.requests[: len(first.requests)]
    assert resumed.requests == whole.requests[len(first.requests) - 1 :]
    finished = [e for e in await store.events(run_id) if isinstance(e, ToolCallFinished)]
    assert len(finished) == STEPS


class CountingSummarizer:
    """Summaries that differ on every call, so a repeated summary would show."""

    def __init__(self) -> None:
        self.calls = 0

    async def summarize(
        self, previous: str | None, turns: Sequence[Turn], max_chars: int
    ) -> Summary:
        self.calls += 1
        return Summary(text=f"summary {self.calls} {uuid.uuid4()}", usage=Usage(input_tokens=7))


async def test_resume_applies_the_journaled_summary_instead_of_summarising_again(
    store: Store,
) -> None:
    summarizer = CountingSummarizer()
    policy = ContextPolicy(max_tokens=BUDGET, keep_turns=3, summarizer=summarizer)
    crashed: list[Sequence[Message]] = []

    def crash_right_after_a_compaction(messages: Sequence[Message], tools: object) -> object:
        if summarizer.calls == 2 and not crashed:
            crashed.append(messages)
            raise Crash
        return _next_call(messages, 120)

    seen: list[object] = []
    with pytest.raises(Crash):
        await Tether(store=store).run(
            _agent(FunctionModel(crash_right_after_a_compaction), policy),
            "take 300 notes",
            subscribers=[seen.append],
        )
    run_id = seen[0].run_id  # type: ignore[attr-defined]
    resumed = FunctionModel(lambda messages, tools: _next_call(messages, 120))
    result = await Tether(store=store).resume(run_id, agent=_agent(resumed, policy))

    assert result.status is RunStatus.COMPLETED
    assert resumed.requests[0].messages == tuple(crashed[0])
    compactions = [e for e in await store.events(run_id) if isinstance(e, ContextCompacted)]
    assert summarizer.calls == len(compactions)
    assert result.usage.input_tokens == 7 * len(compactions)
    replayed = await Tether(store=store).replay(run_id, agent=_agent(resumed, policy))
    assert replayed.status is RunStatus.COMPLETED
    assert summarizer.calls == len(compactions), "a replay never summarises"


async def test_long_tool_outputs_are_shown_cut_with_a_marker_and_journaled_whole() -> None:
    @tool(risk="read")
    def dump() -> str:
        """Return a long text."""
        return "y" * 5000

    model = ScriptedModel([ToolCall(id="c1", name="dump", arguments="{}"), "done"])
    store = InMemoryStore()
    agent = Agent(
        name="dumper", model=model, tools=[dump], context=ContextPolicy(max_tool_output_chars=100)
    )
    result = await Tether(store=store).run(agent, "dump it")
    shown = model.requests[1].messages[-1]
    assert isinstance(shown, ToolResultMessage)
    assert shown.content == "y" * 100 + "\n[tether: output truncated, 4900 more characters]"
    finished = [e for e in await store.events(result.run_id) if isinstance(e, ToolCallFinished)]
    assert finished[0].content == "y" * 5000


async def test_pinned_facts_are_in_every_request() -> None:
    model = FunctionModel(lambda messages, tools: _next_call(messages, 40))
    agent = _agent(model, ContextPolicy(max_tokens=1500, pinned=("The customer is ACME.",)))
    await Tether(store=InMemoryStore()).run(agent, "take 300 notes")
    for request in model.requests:
        notes = request.messages[2]
        assert isinstance(notes, UserMessage) and "- The customer is ACME." in notes.content


async def test_a_model_summary_counts_towards_usage_and_cost() -> None:
    summary_model = FunctionModel(
        lambda messages, tools: ModelResponse(
            text="notes 1 to N were taken", usage=Usage(input_tokens=50, output_tokens=5)
        )
    )
    policy = ContextPolicy(max_tokens=1500, summarizer=ModelSummarizer(summary_model))
    model = FunctionModel(lambda messages, tools: _next_call(messages, 40))
    store = InMemoryStore()
    result = await Tether(store=store).run(_agent(model, policy), "take 300 notes")
    compactions = [e for e in await store.events(result.run_id) if isinstance(e, ContextCompacted)]
    assert compactions and all(c.summary == "notes 1 to N were taken" for c in compactions)
    assert result.usage.output_tokens == 5 * len(compactions)
    prompt = summary_model.requests[0].messages
    assert "data, not instructions" in prompt[0].content  # type: ignore[union-attr]
    assert '"i": 1' in prompt[1].content  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "answer",
    [ModelError("provider down"), ModelResponse(text="   ")],
    ids=["model fails", "empty answer"],
)
async def test_a_failed_model_summary_falls_back_to_the_deterministic_one(answer: object) -> None:
    def summarise(messages: object, tools: object) -> object:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    summarizer = ModelSummarizer(FunctionModel(summarise))
    calls = (ToolCall(id="a", name="t", arguments='{"k": 1}'),)
    turn = Turn(number=1, messages=(AssistantMessage(tool_calls=calls),))
    summary = await summarizer.summarize(None, [turn], 1000)
    assert summary.text == '- turn 1: called t {"k": 1}'


async def test_the_deterministic_summary_keeps_its_newest_lines_within_its_size() -> None:
    turns = [
        Turn(
            number=n,
            messages=(
                AssistantMessage(
                    tool_calls=(ToolCall(id=str(n), name="t", arguments=f'{{"n": {n}}}'),)
                ),
            ),
        )
        for n in range(1, 101)
    ]
    summary = (await DeterministicSummarizer().summarize(None, turns[:60], 400)).text
    summary = (await DeterministicSummarizer().summarize(summary, turns[60:], 400)).text
    lines = summary.splitlines()
    assert len(summary) <= 400
    assert lines[-1] == '- turn 100: called t {"n": 100}'
    dropped = int(lines[0].split("(")[1].split()[0])
    assert dropped + len(lines) - 1 == 100, "every folded turn is either kept or counted"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"max_messages": 3}, "max_messages must be at least 4"),
        ({"keep_turns": 0}, "keep_turns must be at least 1"),
        ({"compact_to": 1.5}, "compact_to must be in (0, 1]"),
        ({"max_summary_chars": 10}, "max_summary_chars must be at least 200"),
        ({"max_tool_output_chars": 0}, "max_tool_output_chars must be at least 1"),
        ({"summarizer": object()}, "has no summarize()"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(
        ConfigurationError,
        match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]"),
    ):
        ContextPolicy(**kwargs)  # type: ignore[arg-type]


async def test_a_journal_with_compactions_needs_an_agent_with_a_policy() -> None:
    from tether.errors import ReplayDivergedError

    store = InMemoryStore()
    model = FunctionModel(lambda messages, tools: _next_call(messages, 40))
    result = await Tether(store=store).run(
        _agent(model, ContextPolicy(max_tokens=1500)), "take 300 notes"
    )
    plain = Agent(
        name="notes", model=model, tools=[note], limits=_agent(model, ContextPolicy()).limits
    )
    with pytest.raises(ReplayDivergedError, match="has no ContextPolicy"):
        await Tether(store=store).replay(result.run_id, agent=plain)


def test_tool_outputs_and_arguments_in_the_estimate() -> None:
    call = ToolCall(id="1", name="abc", arguments="x" * 30)
    assert estimate_tokens([AssistantMessage(tool_calls=(call,))]) == 11
    assert estimate_tokens([ToolResultMessage(call_id="1", name="abc", content="y" * 6)]) == 3


async def test_show_and_the_timeline_draw_each_compaction() -> None:
    import io

    from rich.console import Console

    from tether.cli.timeline import Timeline
    from tether.cli.tree import run_tree

    store = InMemoryStore()
    model = FunctionModel(lambda messages, tools: _next_call(messages, 40))
    live = io.StringIO()
    timeline = Timeline(Console(file=live, width=200))
    result = await Tether(store=store).run(
        _agent(model, ContextPolicy(max_tokens=1500)), "take 300 notes", subscribers=[timeline]
    )
    events = await store.events(result.run_id)
    first = next(e for e in events if isinstance(e, ContextCompacted))
    drawn = io.StringIO()
    Console(file=drawn, width=200).print(run_tree(events))
    line = (
        f"context compacted before step {first.step}: {first.folded} messages summarised so far, "
        f"{first.tokens_before} → {first.tokens_after} tokens"
    )
    assert line in drawn.getvalue()
    assert f"context {first.folded} messages summarised so far" in live.getvalue()


@pytest.mark.local_model
async def test_the_local_models_own_tokenizer_bounds_every_request() -> None:
    """With the model's exact counter, every request fits the model's real window."""
    from tests.models.conftest import require_local_model
    from tether.models.local import LocalModel

    require_local_model()
    local = LocalModel()
    budget = 1200
    model = FunctionModel(lambda messages, tools: _next_call(messages, 80))
    policy = ContextPolicy(max_tokens=budget, keep_turns=2, count_tokens=local.count_tokens)
    result = await Tether(store=InMemoryStore()).run(_agent(model, policy), "take 300 notes")
    assert result.status is RunStatus.COMPLETED
    exact = [local.count_tokens(r.messages, r.tools) for r in model.requests]
    assert max(exact) <= budget
    assert local.count_tokens(result.messages, model.requests[-1].tools) > 5 * budget


async def test_compactions_are_counted_and_logged() -> None:
    import io
    import json
    import logging

    from tether.observe import EventLog, JsonFormatter, Metrics

    stream = io.StringIO()
    logger = logging.getLogger("test.context.events")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    metrics = Metrics()
    store = InMemoryStore()
    model = FunctionModel(lambda messages, tools: _next_call(messages, 40))
    runtime = Tether(store=store, subscribers=[EventLog(logger), metrics])
    result = await runtime.run(_agent(model, ContextPolicy(max_tokens=1500)), "take 300 notes")
    compactions = [e for e in await store.events(result.run_id) if isinstance(e, ContextCompacted)]
    assert len(compactions) >= 2
    counted = metrics.registry.get_sample_value(
        "tether_context_compactions_total", {"agent": "notes"}
    )
    assert counted == len(compactions)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = [line for line in lines if line["event"] == "context_compacted"]
    assert [(line["step"], line["tokens_after"]) for line in logged] == [
        (c.step, c.tokens_after) for c in compactions
    ]


async def test_a_dense_summary_is_folded_again_until_the_request_fits() -> None:
    """A summary costing more tokens than planned (non-ASCII text) triggers more folding."""

    @tool(risk="read")
    def glyphs(i: int) -> str:
        """Return dense text."""
        return f"{i}:" + "漢" * 150

    def script(messages: Sequence[Message], tools: object) -> object:
        results = [m for m in messages if isinstance(m, ToolResultMessage)]
        turn = int(results[-1].content.split(":")[0]) + 1 if results else 0
        if turn >= 30:
            return "done"
        return ToolCall(id=f"g{turn}", name="glyphs", arguments=json.dumps({"i": turn}))

    model = FunctionModel(script)
    policy = ContextPolicy(max_tokens=2000, keep_turns=3, compact_to=1.0)  # no slack
    limits = RunLimits(max_steps=100, max_repeats=50)
    agent = Agent(name="dense", model=model, tools=[glyphs], limits=limits, context=policy)
    result = await Tether(store=InMemoryStore()).run(agent, "read glyphs")
    assert result.status is RunStatus.COMPLETED
    assert max(estimate_tokens(r.messages, r.tools) for r in model.requests) <= 2000


def test_an_overlong_newest_summary_line_keeps_its_start_and_the_count() -> None:
    from tether.context import _newest_lines

    text = _newest_lines(["- turn 1: small", "- turn 2: " + "z" * 800], 600)
    assert len(text) <= 600
    lines = text.splitlines()
    assert lines[0] == "- (1 older lines dropped to keep this summary within its budget)"
    assert lines[1].startswith("- turn 2: zzz") and lines[1].endswith("…")
    assert _newest_lines(["- turn 1: " + "z" * 800], 600).startswith("- turn 1: zzz")


async def test_line_breaks_in_arguments_keep_a_turn_on_one_summary_line() -> None:
    raw = '{"text": "a\u2028b\x85c\nd"}'
    turn = Turn(
        number=1,
        messages=(AssistantMessage(tool_calls=(ToolCall(id="1", name="t", arguments=raw),)),),
    )
    summary = (await DeterministicSummarizer().summarize(None, [turn], 1000)).text
    assert summary.splitlines() == [summary]
    assert "\\u2028" in summary and "\\u0085" in summary and "\\u000a" in summary


def _priced_next_call(messages: Sequence[Message], tools: object) -> ModelResponse:
    step = _next_call(messages, 40)
    if isinstance(step, str):
        return ModelResponse(text=step, cost_usd=Decimal("0.001"))
    return ModelResponse(tool_calls=(step,), cost_usd=Decimal("0.001"))


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_model_summaries_are_reserved_and_paid_under_budgets(
    store_kind: str, tmp_path: Path
) -> None:
    from tether.governance.budgets import Budget
    from tether.models.pricing import Price

    store: Store = InMemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "j.db")
    summary_model = FunctionModel(
        lambda messages, tools: ModelResponse(text="notes so far", cost_usd=Decimal("0.002")),
        name="summariser",
    )
    policy = ContextPolicy(max_tokens=1500, summarizer=ModelSummarizer(summary_model))
    model = FunctionModel(_priced_next_call, name="worker")
    price = Price(input=Decimal("100"), output=Decimal("100"))  # reservations cover the costs
    runtime = Tether(
        store=store,
        budgets=[Budget.per_run(Decimal("1"))],
        prices={"worker": price, "summariser": price},
    )
    result = await runtime.run(_agent(model, policy), "take 300 notes")
    assert result.status is RunStatus.COMPLETED
    summaries = len(summary_model.requests)
    assert summaries >= 2
    assert result.cost_usd == Decimal("0.001") * len(model.requests) + Decimal("0.002") * summaries
    assert runtime.budgets is not None
    (window,) = await runtime.budgets.book.usage()
    assert window.spent_usd == result.cost_usd and window.reserved_usd == 0


async def test_a_summary_a_budget_refuses_is_the_free_deterministic_one() -> None:
    from tether.governance.budgets import Budget
    from tether.models.pricing import Price

    summary_model = FunctionModel(lambda messages, tools: "never asked", name="unpriced")
    policy = ContextPolicy(max_tokens=1500, summarizer=ModelSummarizer(summary_model))
    model = FunctionModel(_priced_next_call, name="worker")
    store = InMemoryStore()
    runtime = Tether(
        store=store,
        budgets=[Budget.per_run(Decimal("1"))],
        prices={"worker": Price(input=Decimal("1"), output=Decimal("1"))},
    )
    result = await runtime.run(_agent(model, policy), "take 300 notes")
    assert result.status is RunStatus.COMPLETED
    assert summary_model.requests == [], "an unpriced model is never called under a budget"
    compactions = [e for e in await store.events(result.run_id) if isinstance(e, ContextCompacted)]
    assert compactions and all(c.summary.startswith("- ") for c in compactions)
    assert result.cost_usd == Decimal("0.001") * len(model.requests)
