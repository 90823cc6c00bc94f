"""Resume after an interruption: recorded steps are replayed, effects follow their semantics.

A crash is simulated in process by a tool raising ``Crash`` (a BaseException, so the
run cannot catch it), which leaves the journal exactly as a kill would: the intent of the
call committed, no result. Real ``kill -9`` crashes are in ``tests/crash/``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from tether import (
    Agent,
    InMemoryStore,
    RunContext,
    RunLimits,
    RunStatus,
    Tether,
    ToolCallFinished,
    ToolCallStarted,
    tool,
)
from tether.errors import ConfigurationError, LeaseLostError, ReplayDivergedError, RunStateError
from tether.store import SqliteStore, Store
from tether.testing import FunctionModel, ScriptedModel, call

pytestmark = pytest.mark.anyio


class Crash(BaseException):
    """Stands for the process dying."""


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return InMemoryStore()
    return SqliteStore(tmp_path / "journal.db")


def make(effect: str, store: Store, crashes: int = 1):
    state = {"effects": 0, "keys": []}

    def body(ctx: RunContext, n: int) -> str:
        state["effects"] += 1
        state["keys"].append(ctx.idempotency_key)
        if state["effects"] <= crashes:
            raise Crash
        return f"done {n}"

    risk = "read" if effect == "read" else "external"
    act = tool(name="act", risk=risk, effect=effect)(body)
    model = ScriptedModel([call("act", {"n": 1}), "finished"])
    agent = Agent(name="r", model=model, tools=[act], limits=RunLimits(max_steps=10))
    return agent, model, state, Tether(store=store)


async def crash_once(runtime: Tether, agent: Agent) -> str:
    seen = []
    with pytest.raises(Crash):
        await runtime.run(agent, "go", subscribers=[seen.append])
    return seen[0].run_id


async def test_read_tool_is_run_again_after_a_crash(store: Store) -> None:
    agent, model, state, runtime = make("read", store)
    run_id = await crash_once(runtime, agent)
    result = await Tether(store=store).resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED and result.output == "finished"
    assert state["effects"] == 2
    assert len(model.requests) == 2, "the recorded model response was not requested again"
    journal = await store.events(run_id)
    assert [e.kind for e in journal].count("tool_call_started") == 1
    assert [e.kind for e in journal].count("tool_call_finished") == 1


async def test_idempotent_tool_is_run_again_with_the_same_key(store: Store) -> None:
    agent, _, state, runtime = make("idempotent", store)
    run_id = await crash_once(runtime, agent)
    result = await Tether(store=store).resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED
    assert state["effects"] == 2
    first, second = state["keys"]
    assert first == second
    intent = next(e for e in await store.events(run_id) if isinstance(e, ToolCallStarted))
    assert intent.idempotency_key == first and intent.effect == "idempotent"


async def test_at_most_once_tool_is_never_run_again_and_needs_review(store: Store) -> None:
    agent, model, state, runtime = make("at_most_once", store)
    run_id = await crash_once(runtime, agent)
    result = await Tether(store=store).resume(run_id, agent=agent)
    assert result.status is RunStatus.NEEDS_REVIEW
    assert result.error is not None and result.error.error_class == "in_doubt"
    assert state["effects"] == 1, "an at-most-once call is never repeated automatically"
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.NEEDS_REVIEW
    assert record.finished_at is None
    kinds = [e.kind for e in await store.events(run_id)]
    assert kinds[-1] == "tool_call_in_doubt" and "run_finished" not in kinds
    with pytest.raises(RunStateError, match="review"):
        await Tether(store=store).resume(run_id, agent=agent)
    assert len(model.requests) == 1


@pytest.mark.parametrize(
    ("decision", "result_text", "effects", "seen"),
    [
        ("skip", None, 1, "outcome_unknown"),
        ("result", '{"charged": true}', 1, '{"charged": true}'),
        ("retry", None, 2, "done 1"),
    ],
)
async def test_review_decisions_continue_the_run(
    store: Store, decision: str, result_text: str | None, effects: int, seen: str
) -> None:
    agent, model, state, runtime = make("at_most_once", store)
    run_id = await crash_once(runtime, agent)
    assert (await Tether(store=store).resume(run_id, agent=agent)).status is RunStatus.NEEDS_REVIEW
    steps = await runtime.review(run_id, decision, result=result_text, reviewer="ops")  # type: ignore[arg-type]
    assert steps == [2]
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.PENDING
    result = await Tether(store=store).resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED
    assert state["effects"] == effects
    told = model.requests[-1].messages[-1]
    assert told.role == "tool" and seen in told.content
    journal = await store.events(run_id)
    decided = [e for e in journal if e.kind == "review_decided"]
    assert len(decided) == 1 and decided[0].reviewer == "ops"
    assert [e.kind for e in journal][-1] == "run_finished"
    # No history sent to a model holds a call without a result.
    for request in model.requests:
        calls = {c.id for m in request.messages if m.role == "assistant" for c in m.tool_calls}
        results = {m.call_id for m in request.messages if m.role == "tool"}
        assert calls == results


async def test_review_refuses_runs_without_calls_in_doubt(store: Store) -> None:
    runtime = Tether(store=store)
    result = await runtime.run(Agent(name="x", model=ScriptedModel(["hi"])), "go")
    with pytest.raises(RunStateError, match="no call in doubt"):
        await runtime.review(result.run_id, "skip")
    with pytest.raises(RunStateError, match="exactly when"):
        await runtime.review(result.run_id, "result")


async def test_recorded_model_calls_are_never_requested_again(store: Store) -> None:
    calls = []

    def respond(messages, tools):  # type: ignore[no-untyped-def]
        calls.append(len(messages))
        turn = sum(m.role == "assistant" for m in messages)
        return call("step", {"i": turn}) if turn < 3 else "done"

    crashed = []

    @tool
    def step(i: int) -> int:
        """One step."""
        if i == 2 and not crashed:
            crashed.append(True)
            raise Crash
        return i

    agent = Agent(name="m", model=FunctionModel(respond), tools=[step])
    runtime = Tether(store=store)
    run_id = await crash_once(runtime, agent)
    assert len(calls) == 3
    result = await runtime.resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED
    assert len(calls) == 4, "only the one unrecorded model call was made"


async def test_a_finished_run_resumes_to_the_same_result_without_writing(store: Store) -> None:
    model = ScriptedModel([call("add_one", {"x": 1}), "2"])

    @tool
    def add_one(x: int) -> int:
        """Add one."""
        return x + 1

    agent = Agent(name="f", model=model, tools=[add_one])
    runtime = Tether(store=store)
    first = await runtime.run(agent, "go")
    before = await store.events(first.run_id)
    again = await runtime.resume(first.run_id, agent=agent)
    assert again.status is first.status and again.output == first.output
    assert again.steps == first.steps and again.messages == first.messages
    assert await store.events(first.run_id) == before
    assert len(model.requests) == 2


async def test_read_only_replay_refuses_to_run_anything(store: Store) -> None:
    agent, _, state, runtime = make("read", store)
    run_id = await crash_once(runtime, agent)
    with pytest.raises(ReplayDivergedError, match="run tool 'act'"):
        await runtime.replay(run_id, agent=agent)
    assert state["effects"] == 1


async def test_replay_detects_a_changed_agent(store: Store) -> None:
    agent, _, _, runtime = make("read", store)
    run_id = await crash_once(runtime, agent)
    other = Agent(name="r", model=ScriptedModel(["different"]), tools=[])
    with pytest.raises(ReplayDivergedError):
        await Tether(store=store, owner="w2").resume(run_id, agent=other)
    # Treated as a crash: the lease is kept until it lapses and the attempt counts.
    record = await store.get_run(run_id)
    assert record is not None and record.lease_owner == "w2" and record.attempts == 1


async def test_fencing_stops_a_worker_whose_run_was_taken(store: Store) -> None:
    runtime = Tether(store=store)
    holder = {}

    @tool
    async def slow(x: int) -> int:
        """Cancels its own run from the outside, then returns."""
        await runtime.cancel(holder["run_id"], reason="operator")
        return x

    def grab(event) -> None:  # type: ignore[no-untyped-def]
        holder.setdefault("run_id", event.run_id)

    agent = Agent(name="c", model=ScriptedModel([call("slow", {"x": 1}), "never"]), tools=[slow])
    with pytest.raises(LeaseLostError):
        await runtime.run(agent, "go", subscribers=[grab])
    journal = await store.events(holder["run_id"])
    assert journal[-1].kind == "run_finished" and journal[-1].status is RunStatus.CANCELLED
    results = [e for e in journal if isinstance(e, ToolCallFinished)]
    assert [r.error_class for r in results] == ["cancelled"], "the fenced write was refused"


async def test_crash_loop_ends_failed(store: Store) -> None:
    runtime = Tether(store=store, max_crashes=3)
    run_id = await runtime.submit(Agent(name="p", model=ScriptedModel(["x"])), "go")
    for _ in range(5):  # five claims, none released: four deaths
        lease = await store.claim("dead", lease_for=timedelta(0), run_id=run_id)
        assert lease is not None
    result = await runtime.drive(lease, Agent(name="p", model=ScriptedModel(["x"])))
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "crash_loop"


async def test_three_crashes_are_still_tolerated(store: Store) -> None:
    runtime = Tether(store=store, max_crashes=3)
    agent = Agent(name="p", model=ScriptedModel(["fine"]))
    run_id = await runtime.submit(agent, "go")
    for _ in range(4):  # the fourth claim follows three deaths
        lease = await store.claim("dead", lease_for=timedelta(0), run_id=run_id)
    assert lease is not None and lease.attempts == 4
    result = await runtime.drive(lease, agent)
    assert result.status is RunStatus.COMPLETED


async def test_resume_refuses_a_run_owned_by_a_live_worker(store: Store) -> None:
    runtime = Tether(store=store)
    run_id = await runtime.submit(Agent(name="p", model=ScriptedModel(["x"])), "go")
    await store.claim("other", lease_for=timedelta(minutes=5), run_id=run_id)
    with pytest.raises(RunStateError, match="owned by other"):
        await runtime.resume(run_id, agent=Agent(name="p", model=ScriptedModel(["x"])))


async def test_cancel_a_pending_run(store: Store) -> None:
    runtime = Tether(store=store)
    run_id = await runtime.submit(Agent(name="p", model=ScriptedModel(["x"])), "go")
    record = await runtime.cancel(run_id, reason="not needed")
    assert record.status is RunStatus.CANCELLED and record.finished_at is not None
    with pytest.raises(RunStateError, match="already finished"):
        await runtime.cancel(run_id)


async def test_lease_is_renewed_during_a_long_run(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "j.db")
    runtime = Tether(store=store, lease_for=timedelta(milliseconds=300))

    @tool
    async def wait() -> str:
        """Takes longer than the lease."""
        await asyncio.sleep(0.8)
        return "ok"

    agent = Agent(name="l", model=ScriptedModel([call("wait"), "done"]), tools=[wait])
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.COMPLETED


async def test_a_reviewed_run_can_be_resumed_again_after_another_crash(store: Store) -> None:
    crashes: list[str] = []

    def act(n: int) -> str:
        if not crashes:
            crashes.append("act")
            raise Crash  # the at-most-once call dies in its window
        return f"done {n}"

    def read_it(n: int) -> str:
        if len(crashes) == 1:
            crashes.append("read")
            raise Crash  # the next call dies too, after the review
        return f"read {n}"

    tools = [
        tool(name="act", risk="external", effect="at_most_once")(act),
        tool(name="read_it")(read_it),
    ]
    model = ScriptedModel([call("act", {"n": 1}), call("read_it", {"n": 2}), "finished"])
    agent = Agent(name="r", model=model, tools=tools)
    runtime = Tether(store=store)
    run_id = await crash_once(runtime, agent)
    assert (await runtime.resume(run_id, agent=agent)).status is RunStatus.NEEDS_REVIEW
    await runtime.review(run_id, "skip")
    with pytest.raises(Crash):
        await runtime.resume(run_id, agent=agent)
    result = await runtime.resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED and result.output == "finished"
    again = await runtime.resume(run_id, agent=agent)
    assert again.status is RunStatus.COMPLETED and again.messages == result.messages


async def test_crash_loop_is_journaled_even_mid_run(store: Store) -> None:
    agent, _, _, runtime = make("read", store, crashes=10)
    run_id = await crash_once(runtime, agent)
    for _ in range(5):
        lease = await store.claim("dead", lease_for=timedelta(0), run_id=run_id)
    assert lease is not None
    result = await runtime.drive(lease, agent)
    assert result.status is RunStatus.FAILED and result.error is not None
    assert result.error.error_class == "crash_loop"
    journal = await store.events(run_id)
    assert [e.kind for e in journal][-2:] == ["tool_call_finished", "run_finished"]
    assert journal[-2].error_class == "crash_loop", "the orphaned intent got a result"


async def test_cancel_answers_calls_cut_short(store: Store) -> None:
    agent, _, _, runtime = make("at_most_once", store)
    run_id = await crash_once(runtime, agent)
    await runtime.cancel(run_id, reason="operator")
    journal = await store.events(run_id)
    assert [e.kind for e in journal][-2:] == ["tool_call_finished", "run_finished"]
    assert journal[-2].error_class == "cancelled"


async def test_review_result_must_be_json(store: Store) -> None:
    agent, _, _, runtime = make("at_most_once", store)
    run_id = await crash_once(runtime, agent)
    await runtime.resume(run_id, agent=agent)
    with pytest.raises(RunStateError, match="must be JSON"):
        await runtime.review(run_id, "result", result="{nope")


async def test_review_decides_every_call_in_doubt_at_once(store: Store) -> None:
    ran: list[int] = []

    def send(n: int) -> str:
        ran.append(n)
        if len(ran) <= 2:
            raise Crash if len(ran) == 2 else _Blocked()
        return "sent"

    class _Blocked(Exception):
        pass

    tools = [tool(name="send", risk="external", effect="at_most_once")(send)]
    batch = [call("send", {"n": 1}), call("send", {"n": 2})]
    agent = Agent(name="b", model=ScriptedModel([batch, "done"]), tools=tools)
    runtime = Tether(store=store)
    run_id = await crash_once(runtime, agent)
    paused = await runtime.resume(run_id, agent=agent)
    assert paused.status is RunStatus.NEEDS_REVIEW
    steps = await runtime.review(run_id, "skip")
    assert steps == [2, 3], "both calls of the batch were in doubt and are decided together"
    result = await runtime.resume(run_id, agent=agent)
    assert result.status is RunStatus.COMPLETED


async def test_in_doubt_can_end_the_run_for_good(store: Store) -> None:
    agent, model, state, runtime = make("at_most_once", store)
    run_id = await crash_once(runtime, agent)
    result = await Tether(store=store, in_doubt="end").resume(run_id, agent=agent)
    assert result.status is RunStatus.NEEDS_REVIEW
    assert result.error is not None and result.error.error_class == "in_doubt"
    assert state["effects"] == 1 and len(model.requests) == 1
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.NEEDS_REVIEW
    assert record.finished_at is not None, "the run ended"
    journal = await store.events(run_id)
    kinds = [e.kind for e in journal]
    assert kinds[-3:] == ["tool_call_in_doubt", "tool_call_finished", "run_finished"]
    answer = next(e for e in journal if isinstance(e, ToolCallFinished))
    assert answer.error_class == "in_doubt" and "unknown" in answer.content
    with pytest.raises(RunStateError, match="already ended"):
        await Tether(store=store).review(run_id, "retry")
    again = await Tether(store=store).resume(run_id, agent=agent)
    assert again.status is RunStatus.NEEDS_REVIEW and state["effects"] == 1
    replayed = await Tether(store=store, in_doubt="end").replay(run_id, agent=agent)
    assert replayed.status is RunStatus.NEEDS_REVIEW


def test_in_doubt_setting_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="in_doubt"):
        Tether(store=InMemoryStore(), in_doubt="later")  # type: ignore[arg-type]
