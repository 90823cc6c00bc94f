"""Each failure mode of a tool call: what the run did, what the model was told, and
whether the function ran."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from pydantic import BaseModel

from tests.conftest import Counter, error_of, last_result, make_agent, tool_results
from tether import Agent, RunLimits, RunStatus, ToolError, tool
from tether.testing import FaultPlan, ScriptedModel, call


def test_malformed_json(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", '{"a": 1, "b": '), "gave up"])
    result = make_agent(model, [add]).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert len(counter) == 0
    error = error_of(last_result(model))
    assert error["error"] == "malformed_arguments"
    assert error["tool"] == "add"


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": NaN, "b": 1}',
        '{"a": Infinity, "b": 1}',
        '{"a": 1, "a": 2, "b": 1}',
        "[1, 2]",
        '{"a": 1, "b": 2,}',
        "[" * 10_000 + "]" * 10_000,
    ],
)
def test_strict_json_rules(add, counter: Counter, raw: str) -> None:
    model = ScriptedModel([call("add", raw), "ok"])
    make_agent(model, [add]).run_sync("go")
    assert len(counter) == 0
    assert error_of(last_result(model))["error"] == "malformed_arguments"


def test_unknown_tool_lists_available_names(add, counter: Counter) -> None:
    model = ScriptedModel([call("multiply", {"a": 1, "b": 2}), "ok"])
    result = make_agent(model, [add]).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    error = error_of(last_result(model))
    assert error["error"] == "unknown_tool"
    assert error["available"] == ["add"]
    assert len(counter) == 0


@pytest.mark.parametrize("name", ["ADD", "Add", "аdd", "add ", "a\u200bdd", "ａｄｄ"])
def test_look_alike_names_never_resolve(add, counter: Counter, name: str) -> None:
    model = ScriptedModel([call(name, {"a": 1, "b": 2}), "ok"])
    make_agent(model, [add]).run_sync("go")
    assert len(counter) == 0
    assert error_of(last_result(model))["error"] == "unknown_tool"


def test_oversize_arguments_are_refused_before_parsing(add, counter: Counter) -> None:
    huge = '{"a": 1, "b": 2, "pad": "' + "x" * (300 * 1024) + '"}'
    model = ScriptedModel([call("add", huge), "ok"])
    make_agent(model, [add]).run_sync("go")
    assert len(counter) == 0
    result = last_result(model)
    error = error_of(result)
    assert error["error"] == "arguments_too_large"
    assert "262144" in error["message"]


def test_size_cap_counts_bytes_not_characters(add, counter: Counter) -> None:
    # 100 characters of 4-byte UTF-8 are 400 bytes.
    args = '{"a": 1, "b": 2, "s": "' + "😀" * 100 + '"}'
    model = ScriptedModel([call("add", args), "ok"])
    make_agent(model, [add], max_argument_bytes=300).run_sync("go")
    assert error_of(last_result(model))["error"] == "arguments_too_large"


@pytest.mark.parametrize(
    ("args", "loc"),
    [
        ({"a": "one", "b": 2}, "a"),
        ({"a": 1}, "b"),
        ({"a": 1, "b": 2, "c": 3}, "c"),
        ({"a": [1], "b": {"x": 1}}, "a"),
        ({"a": "1", "b": 2}, "a"),
        ({"a": True, "b": 2}, "a"),
        ({"a": 1.5, "b": 2}, "a"),
        ({"a": None, "b": 2}, "a"),
    ],
)
def test_wrong_missing_or_extra_fields(add, counter: Counter, args, loc: str) -> None:
    model = ScriptedModel([call("add", args), "ok"])
    make_agent(model, [add]).run_sync("go")
    assert len(counter) == 0, "hallucinated arguments never reach the function"
    error = error_of(last_result(model))
    assert error["error"] == "invalid_arguments"
    assert loc in [p["loc"] for p in error["problems"]]


def test_error_results_are_bounded_to_4_kib(add) -> None:
    args = {f"field_{i}_" + "z" * 150: i for i in range(100)}
    model = ScriptedModel([call("add", args), call("x" * 5000, {}), "ok"])
    make_agent(model, [add]).run_sync("go")
    for message in tool_results(model, 3):
        assert len(message.content.encode()) <= 4096
        error_of(message)


def test_tool_that_raises_becomes_an_error_result() -> None:
    ran = []

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        ran.append(url)
        raise ConnectionError("connection reset")

    model = ScriptedModel([call("fetch", {"url": "http://x"}), "could not fetch"])
    result = make_agent(model, [fetch]).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert ran == ["http://x"]
    error = error_of(last_result(model))
    assert error["error"] == "tool_unavailable" and error["retryable"] is True
    assert "ConnectionError: connection reset" in error["message"]


def test_tool_error_carries_its_class_and_retryability() -> None:
    @tool
    def charge(amount: int) -> str:
        """Charge."""
        raise ToolError("card declined", error_class="card_declined", retryable=False)

    model = ScriptedModel([call("charge", {"amount": 5}), "declined"])
    make_agent(model, [charge]).run_sync("go")
    error = error_of(last_result(model))
    assert error == {
        "error": "card_declined",
        "tool": "charge",
        "message": "card declined",
        "retryable": False,
    }


@pytest.mark.anyio
async def test_async_tool_that_hangs_times_out() -> None:
    cancelled = []

    @tool(timeout=0.05)
    async def slow() -> str:
        """Never finishes."""
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.append(True)
        return "unreachable"

    model = ScriptedModel([call("slow"), "it timed out"])
    result = await make_agent(model, [slow]).run("go")
    assert result.status is RunStatus.COMPLETED
    error = error_of(last_result(model))
    assert error["error"] == "tool_timeout"
    assert cancelled == [True], "an async tool is cancelled on timeout"


@pytest.mark.anyio
async def test_sync_tool_that_hangs_times_out_and_is_abandoned() -> None:
    release = threading.Event()
    finished = []

    @tool(timeout=0.05)
    def blocking() -> str:
        """Blocks until released."""
        release.wait(5)
        finished.append(True)
        return "late"

    model = ScriptedModel([call("blocking"), "moved on"])
    result = await make_agent(model, [blocking]).run("go")
    assert result.status is RunStatus.COMPLETED
    assert error_of(last_result(model))["error"] == "tool_timeout"
    assert finished == [], "the thread is still blocked; the run did not wait for it"
    release.set()
    for _ in range(100):
        if finished:
            break
        await asyncio.sleep(0.01)
    assert finished == [True]


@tool
async def lookup(key: str) -> str:
    """Look a key up."""
    return key


def test_fault_plan_hang_is_bounded_by_the_run_deadline() -> None:
    plan = FaultPlan().hang_on("lookup")
    model = ScriptedModel([call("lookup", {"key": "k"}), "never"])
    agent = Agent(
        name="t",
        model=model,
        tools=plan.apply([lookup]),
        limits=RunLimits(max_duration=timedelta(milliseconds=100)),
    )
    started = time.monotonic()
    result = agent.run_sync("go")
    assert time.monotonic() - started < 5
    assert result.status is RunStatus.TIMED_OUT
    assert plan.real_calls("lookup") == 0
    # The interrupted call still has exactly one result in the history and the journal.
    (interrupted,) = [m for m in result.messages if m.role == "tool"]
    assert interrupted.is_error and "run_timed_out" in interrupted.content


def test_interrupted_call_is_journaled_as_started_and_timed_out() -> None:
    plan = FaultPlan().hang_on("lookup")
    seen = []
    agent = Agent(
        name="t",
        model=ScriptedModel([call("lookup", {"key": "k"})]),
        tools=plan.apply([lookup]),
        limits=RunLimits(max_duration=timedelta(milliseconds=50)),
    )
    agent.run_sync("go", subscribers=[seen.append])
    kinds = [e.kind for e in seen]
    assert kinds[-4:] == ["tool_call_started", "tool_call_finished", "limit_hit", "run_finished"]
    finished = seen[-3]
    assert finished.error_class == "run_timed_out" and finished.executed is True


def test_a_tool_raising_timeout_error_itself_is_unavailable_not_timed_out() -> None:
    @tool
    def remote() -> str:
        """Calls a remote service."""
        raise TimeoutError("socket timed out")

    model = ScriptedModel([call("remote"), "ok"])
    make_agent(model, [remote]).run_sync("go")
    error = error_of(last_result(model))
    assert error["error"] == "tool_unavailable", "its own timeout, not the tool's deadline"
    assert "socket timed out" in error["message"]


def test_garbage_return_value_is_an_error_result(add, counter: Counter) -> None:
    plan = FaultPlan().garbage_on("add", "not a number")
    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "hmm"])
    result = make_agent(model, plan.apply([add])).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert error_of(last_result(model))["error"] == "invalid_result"


def test_unserialisable_return_value_is_an_error_result() -> None:
    @tool
    def weird():  # no return annotation
        """Returns an object that is not JSON."""
        return object()

    model = ScriptedModel([call("weird"), "hmm"])
    make_agent(model, [weird]).run_sync("go")
    assert error_of(last_result(model))["error"] == "invalid_result"


def test_long_output_is_truncated_with_a_marker() -> None:
    @tool
    def dump() -> str:
        """Big output."""
        return "y" * 1000

    model = ScriptedModel([call("dump"), "ok"])
    make_agent(model, [dump], max_tool_output_chars=100).run_sync("go")
    content = last_result(model).content
    assert content.startswith("y" * 100)
    assert "[tether: output truncated, 900 more characters]" in content
    assert not last_result(model).is_error


@pytest.mark.anyio
async def test_parallel_calls_run_concurrently_with_a_cap() -> None:
    running = 0
    peak = 0

    @tool
    async def work(n: int) -> int:
        """Work a little."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return n

    batch = [call("work", {"n": i}) for i in range(10)]
    model = ScriptedModel([batch, "done"])
    result = await make_agent(model, [work], max_parallel_tool_calls=4).run("go")
    assert result.status is RunStatus.COMPLETED
    assert peak == 4
    results = tool_results(model, 2)
    assert [r.content for r in results] == [str(i) for i in range(10)], "results keep call order"
    assert [r.call_id for r in results] == [f"call_1_{i}" for i in range(10)]


def test_hundred_parallel_calls_each_get_one_result(add, counter: Counter) -> None:
    batch = [call("add", {"a": i, "b": i}) for i in range(100)]
    model = ScriptedModel([batch, "done"])
    result = make_agent(model, [add], max_steps=200).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert len(counter) == 100
    assert len(tool_results(model, 2)) == 100


def test_duplicate_call_ids_are_rejected(add, counter: Counter) -> None:
    batch = [call("add", {"a": 1, "b": 1}, id="c1"), call("add", {"a": 2, "b": 2}, id="c1")]
    model = ScriptedModel([batch, "ok"])
    result = make_agent(model, [add]).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert len(counter) == 0
    told = model.requests[1].messages[-1]
    assert told.role == "user"
    assert "unique" in told.content and "c1" in told.content
    # The refused response is not in the history, so no call lacks a result.
    assert all(m.role != "tool" for m in model.requests[1].messages)


def test_repeated_call_returns_the_earlier_result_with_a_note(add, counter: Counter) -> None:
    model = ScriptedModel([call("add", {"a": 1, "b": 2}), call("add", {"b": 2, "a": 1}), "3"])
    result = make_agent(model, [add]).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert len(counter) == 1
    repeat = last_result(model)
    assert repeat.content.startswith("3\n[tether: identical to the call at step 2")
    assert not repeat.is_error


def test_identical_calls_in_one_response_run_once(add, counter: Counter) -> None:
    batch = [call("add", {"a": 1, "b": 2}), call("add", {"a": 1, "b": 2})]
    model = ScriptedModel([batch, "3"])
    make_agent(model, [add]).run_sync("go")
    assert len(counter) == 1
    first, second = tool_results(model, 2)
    assert first.content == "3"
    assert second.content.startswith("3\n[tether: identical")


def test_a_failed_call_may_be_retried(counter: Counter) -> None:
    plan = FaultPlan()

    @tool
    def flaky(x: int) -> int:
        """Sometimes fails."""
        counter.calls.append({"x": x})
        return x

    plan.raise_on("flaky", ConnectionError("blip"), times=1)
    model = ScriptedModel([call("flaky", {"x": 1}), call("flaky", {"x": 1}), "1"])
    result = make_agent(model, plan.apply([flaky])).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert plan.invocations("flaky") == 2
    assert len(counter) == 1
    assert last_result(model).content == "1"


class Answer(BaseModel):
    value: int
    unit: str


def test_invalid_structured_output_gets_feedback_and_a_retry() -> None:
    model = ScriptedModel(['{"value": "three"}', '{"value": 3, "unit": "apples"}'])
    agent = Agent(name="s", model=model, output_type=Answer)
    result = agent.run_sync("how many?")
    assert result.status is RunStatus.COMPLETED
    assert result.output == Answer(value=3, unit="apples")
    feedback = model.requests[1].messages[-1]
    assert feedback.role == "user"
    assert "value" in feedback.content and "unit" in feedback.content
    assert '"value"' in model.requests[0].messages[0].content  # schema in the system prompt


def test_invalid_structured_output_is_bounded() -> None:
    model = ScriptedModel(["nope", "still nope", "no", "never used"])
    agent = Agent(name="s", model=model, output_type=Answer, limits=RunLimits(max_output_retries=2))
    result = agent.run_sync("how many?")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error.error_class == "output_invalid"
    assert len(model.requests) == 3
    assert result.output is None


def test_empty_final_answer_is_not_accepted_silently() -> None:
    model = ScriptedModel(["", "   ", "finally"])
    result = make_agent(model, []).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    assert result.output == "finally"


def test_hung_sync_tool_never_keeps_run_sync_from_returning() -> None:
    @tool(timeout=0.05)
    def stuck() -> str:
        """Blocks forever."""
        threading.Event().wait()
        return "never"

    model = ScriptedModel([call("stuck"), "gave up on it"])
    started = time.monotonic()
    result = make_agent(model, [stuck]).run_sync("go")
    assert time.monotonic() - started < 2
    assert result.status is RunStatus.COMPLETED
    assert error_of(tool_results(model, 2)[0])["error"] == "tool_timeout"


def test_fault_plan_hang_on_a_sync_tool_with_a_timeout(add) -> None:
    timed = tool(name="add", timeout=0.05)(add.function)
    plan = FaultPlan().hang_on("add", times=1)
    model = ScriptedModel([call("add", {"a": 1, "b": 1}), call("add", {"a": 1, "b": 1}), "2"])
    result = make_agent(model, plan.apply([timed])).run_sync("go")
    assert result.status is RunStatus.COMPLETED
    first, second = tool_results(model, 3)
    assert error_of(first)["error"] == "tool_timeout"
    assert second.content == "2"
    assert plan.real_calls("add") == 1


def test_deadline_keeps_results_of_calls_that_finished(add, counter: Counter) -> None:
    plan = FaultPlan().hang_on("lookup")
    batch = [call("add", {"a": 1, "b": 1}), call("lookup", {"key": "k"})]
    agent = Agent(
        name="t",
        model=ScriptedModel([batch]),
        tools=[add, *plan.apply([lookup])],
        limits=RunLimits(max_duration=timedelta(milliseconds=50)),
    )
    result = agent.run_sync("go")
    assert result.status is RunStatus.TIMED_OUT
    done, interrupted = [m for m in result.messages if m.role == "tool"]
    assert done.content == "2" and not done.is_error
    assert error_of(interrupted)["error"] == "run_timed_out"


def test_deadline_keeps_repeats_of_finished_calls_and_their_own_steps(add) -> None:
    plan = FaultPlan().hang_on("lookup")
    batch = [
        call("add", {"a": 1, "b": 1}),
        call("lookup", {"key": "k"}),
        call("add", {"a": 1, "b": 1}),
    ]
    seen = []
    agent = Agent(
        name="t",
        model=ScriptedModel([batch]),
        tools=[add, *plan.apply([lookup])],
        limits=RunLimits(max_duration=timedelta(milliseconds=50)),
    )
    result = agent.run_sync("go", subscribers=[seen.append])
    first, interrupted, repeat = [m for m in result.messages if m.role == "tool"]
    assert first.content == "2"
    assert error_of(interrupted)["error"] == "run_timed_out"
    assert repeat.content.startswith("2\n[tether: identical")
    finished = [e for e in seen if e.kind == "tool_call_finished"]
    assert [e.step for e in finished] == [2, 3, 4]
