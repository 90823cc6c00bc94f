"""The model seam: one method, ``request``.

Adapters translate tether's :mod:`~tether.messages` to a provider's wire format and map
every provider failure to :class:`~tether.errors.ModelError` at the edge, so the run loop
never sees a foreign exception type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tether.messages import Message, ModelResponse, ToolDefinition

__all__ = ["Model", "ModelSettings", "close_model"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Per-request settings passed to a model."""

    max_output_tokens: int | None = None
    """Cap on generated tokens for one request. Default: the adapter's own default."""
    temperature: float | None = None
    """Sampling temperature. Default: the provider's default."""


@runtime_checkable
class Model(Protocol):
    """Anything that can answer a conversation with text or tool calls."""

    @property
    def name(self) -> str:
        """A short name for logs and results, such as ``openai:gpt-4.1``."""
        ...

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Answer ``messages``, optionally with calls to ``tools``.

        Raises:
            ModelError: The request failed; ``error_class`` and ``retryable`` say how.
        """
        ...


async def close_model(model: Model) -> None:
    """Release what ``model`` holds (HTTP connections), if it has an ``aclose`` method.

    Adapters with network clients have ``aclose``; the :class:`Model` protocol does not
    require it, so scripted and in-process models need nothing.
    """
    closer = getattr(model, "aclose", None)
    if closer is not None:
        await closer()
