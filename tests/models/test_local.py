"""The local model: SmolLM2-135M through llama.cpp in this process, nothing mocked.

At temperature 0 (the default) the answers are deterministic; the assertions about the
model's *choice* (a call for a sum, a message for a greeting) rely on that, and the ones
about *shape* (arguments that parse and fit the schema, token caps) hold for any choice.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.models.conftest import require_local_model
from tether import (
    AssistantMessage,
    ConfigurationError,
    ModelError,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    tool,
)
from tether.models import ModelSettings, resolve_model
from tether.models.local import LocalModel, locate_model_file, render_prompt


@tool(risk="read")
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First addend.
        b: Second addend.
    """
    return a + b


@tool(risk="read")
def convert(distance: float, unit: Literal["km", "mi"]) -> float:
    """Convert a distance to the other unit.

    Args:
        distance: The distance.
        unit: The unit the distance is in.
    """
    return distance


ADD = add.definition
CONVERT = convert.definition
SUM = [UserMessage(content="Add 17 and 25.")]
GREETING = [UserMessage(content="Say hello.")]
SHORT = ModelSettings(max_output_tokens=32)


@pytest.fixture(scope="module")
def model() -> Iterator[LocalModel]:
    """One model for the module: it loads once, and later prompts reuse cached prefixes."""
    require_local_model()
    yield LocalModel()


def call_of(response: Any, tool_name: str) -> dict[str, Any]:
    """The response's one call of ``tool_name``, its arguments parsed as a JSON object."""
    assert len(response.tool_calls) == 1, response
    call = response.tool_calls[0]
    assert call.name == tool_name and call.id.startswith("call_"), call
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict), arguments
    return arguments


# --- With the model ------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.anyio
class TestLocalModel:
    async def test_plain_answer(self, model: LocalModel) -> None:
        assert model.name == "local:SmolLM2-135M-Instruct.Q4_1"
        response = await model.request(GREETING, [], SHORT)
        assert response.text and response.text.strip()
        assert response.tool_calls == ()
        assert response.usage.input_tokens > 0 and 0 < response.usage.output_tokens <= 32
        assert response.finish_reason in ("stop", "length")
        assert response.cost_usd == Decimal(0)
        assert response.model_name == model.name

    async def test_tool_call(self, model: LocalModel) -> None:
        response = await model.request(SUM, [ADD], SHORT)
        # The schema's grammar fixes the shape: two integers, nothing else. (The values
        # are 17 and 25 here, but only the shape is guaranteed.)
        arguments = call_of(response, "add")
        assert set(arguments) == {"a", "b"}
        assert all(isinstance(v, int) for v in arguments.values())
        assert response.text is None
        assert response.finish_reason == "tool_calls"
        assert response.cost_usd == Decimal(0)
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0

    async def test_arguments_follow_the_schema(self, model: LocalModel) -> None:
        messages = [UserMessage(content="Convert 5 km to miles.")]
        response = await model.request(messages, [ADD, CONVERT], SHORT)
        assert response.tool_calls, response
        call = response.tool_calls[0]
        assert call.name in ("add", "convert")
        arguments = call_of(response, call.name)
        if call.name == "convert":
            assert set(arguments) == {"distance", "unit"}
            assert isinstance(arguments["distance"], int | float)
            assert arguments["unit"] in ("km", "mi")
        else:
            assert set(arguments) == {"a", "b"}
            assert all(isinstance(v, int) for v in arguments.values())

    async def test_message_when_tools_are_offered(self, model: LocalModel) -> None:
        # llama-cpp-python's own auto tool choice returns "" here; tether writes the
        # message without the grammar that empties it.
        response = await model.request(GREETING, [ADD], SHORT)
        assert response.tool_calls == ()
        assert response.text and response.text.strip()
        assert response.finish_reason in ("stop", "length")

    async def test_answers_after_a_tool_result(self, model: LocalModel) -> None:
        call = ToolCall(id="call_1", name="add", arguments='{"a": 17, "b": 25}')
        messages = [
            *SUM,
            AssistantMessage(tool_calls=(call,)),
            ToolResultMessage(call_id="call_1", name="add", content="42"),
        ]
        response = await model.request(messages, [ADD], SHORT)
        # SmolLM2-135M mostly repeats the call here; either way the response is whole.
        assert response.text or response.tool_calls, response
        for made in response.tool_calls:
            assert set(json.loads(made.arguments)) == {"a", "b"}

    @pytest.mark.parametrize("tools", [[], [ADD]], ids=["no tools", "tools"])
    async def test_max_output_tokens_is_honoured(self, model: LocalModel, tools: list) -> None:
        messages = [UserMessage(content="Write a long story about a dragon.")]
        response = await model.request(messages, tools, ModelSettings(max_output_tokens=8))
        assert 0 < response.usage.output_tokens <= 8, response
        assert response.finish_reason == "length", response

    async def test_concurrent_requests_take_turns(self, model: LocalModel) -> None:
        llama = model._load()
        inside = 0
        most = 0
        guard = threading.Lock()
        complete = llama.create_completion

        def watched(*args: Any, **kwargs: Any) -> Any:
            nonlocal inside, most
            with guard:
                inside += 1
                most = max(most, inside)
            try:
                return complete(*args, **kwargs)
            finally:
                with guard:
                    inside -= 1

        llama.create_completion = watched
        try:
            first, second = await asyncio.gather(
                model.request(GREETING, [], SHORT), model.request(GREETING, [], SHORT)
            )
        finally:
            del llama.create_completion
        assert most == 1  # llama.cpp was never entered by two threads at once
        assert first.text and second.text

    async def test_count_tokens_is_the_prompt_the_model_reads(self, model: LocalModel) -> None:
        response = await model.request(SUM, [ADD], SHORT)
        assert model.count_tokens(SUM, [ADD]) == response.usage.input_tokens
        assert model.count_tokens(SUM, []) < model.count_tokens(SUM, [ADD])

    async def test_context_overflow_is_context_too_long(self) -> None:
        require_local_model()
        small = LocalModel(context_tokens=256)
        messages = [UserMessage(content="word " * 2000)]
        with pytest.raises(ModelError) as caught:
            await small.request(messages, [], SHORT)
        assert caught.value.error_class == "context_too_long"
        assert not caught.value.retryable


# --- Without the model -----------------------------------------------------------------


def test_locate_model_file_honours_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "other.gguf"
    chosen.write_bytes(b"GGUF")
    monkeypatch.setenv("TETHER_LOCAL_MODEL", str(chosen))
    assert locate_model_file() == chosen


def test_locate_model_file_names_the_env_var_for_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_LOCAL_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigurationError, match="TETHER_LOCAL_MODEL"):
        locate_model_file()


def test_resolve_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "other.gguf"
    chosen.write_bytes(b"GGUF")
    monkeypatch.setenv("TETHER_LOCAL_MODEL", str(chosen))
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(ConfigurationError, match="llama-cpp-python"):
            resolve_model("local")
        return
    model = resolve_model("local")
    assert isinstance(model, LocalModel)
    assert model.path == chosen and model.name == "local:other"


@pytest.mark.parametrize("name", ["nope", "openai:", "anthropic:", "local:x", ""])
def test_resolve_unknown_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown model"):
        resolve_model(name)


def test_local_model_refuses_a_missing_path(tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the llama_cpp check comes first")
    with pytest.raises(ConfigurationError, match="no model file"):
        LocalModel(tmp_path / "missing.gguf")


def test_prompt_lists_tools_and_keeps_tool_results() -> None:
    call = ToolCall(id="call_1", name="add", arguments='{"a": 1, "b": 2}')
    prompt = render_prompt(
        [
            SystemMessage(content="Be brief."),
            UserMessage(content="1 + 2?"),
            AssistantMessage(tool_calls=(call,)),
            ToolResultMessage(call_id="call_1", name="add", content="3"),
            AssistantMessage(text="It is 3."),
            UserMessage(content="Thanks."),
        ],
        [ADD],
    )
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou have access")
    assert "functions.add:\nAdd two integers.\n" in prompt
    assert json.dumps(ADD.parameters) in prompt
    assert '<|im_start|>assistant\nfunctions.add:\n{"a": 1, "b": 2}<|im_end|>' in prompt
    assert "<|im_start|>tool\n3<|im_end|>" in prompt  # the result reaches the model
    assert "<|im_start|>assistant\nmessage:\nIt is 3.<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nThanks.<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.count("<|im_start|>system") == 1


def test_prompt_without_tools_is_plain_chatml() -> None:
    prompt = render_prompt([UserMessage(content="Hi."), AssistantMessage(text="Hello.")], [])
    assert prompt == (
        "<|im_start|>user\nHi.<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_prompt_with_tools_and_no_system_message_gets_one() -> None:
    prompt = render_prompt([UserMessage(content="Hi.")], [ADD])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.\n\nYou have")
