"""A chain of models: when one fails, the next serves.

``FallbackModel([primary, secondary])`` asks ``primary``; when it fails for good (a
fatal error, retries used up, or its circuit breaker open) it asks ``secondary``, and so
on. A response served by any model but the first is marked ``degraded``, so the run ends
with ``RunResult.degraded`` true and the journal records which model served each step
(``ModelResponse.model_name``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from tether.errors import ConfigurationError, ModelError, TetherError
from tether.messages import Message, ModelResponse, ToolDefinition
from tether.models.base import Model, ModelSettings, close_model
from tether.models.registry import resolve_model

__all__ = ["FallbackModel"]

logger = logging.getLogger("tether")


class FallbackModel:
    """Models tried in order until one answers.

    Wrap each model in :class:`~tether.models.ResilientModel` (``"openai:..."`` and
    ``"anthropic:..."`` names come wrapped) so that a model is retried before the next one
    is asked, and skipped at once while its breaker is open.

    Args:
        models: The primary model first, then the fallbacks, as models or names for
            :func:`~tether.models.resolve_model`. At least two.

    Raises:
        ConfigurationError: Fewer than two models.
    """

    def __init__(self, models: Sequence[Model | str]) -> None:
        if len(models) < 2:
            raise ConfigurationError("FallbackModel needs a primary model and at least one more")
        self.models = tuple(resolve_model(m) for m in models)

    @property
    def name(self) -> str:
        """``fallback(<first>, <second>, ...)``."""
        return f"fallback({', '.join(m.name for m in self.models)})"

    async def aclose(self) -> None:
        """Close every model of the chain that has anything to close."""
        for model in self.models:
            await close_model(model)

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Ask each model in turn; return the first response.

        Raises:
            ModelError: Every model failed; the message lists each failure, and the error
                class and retryability are the last model's.
        """
        failures: list[str] = []
        last: TetherError | None = None
        for index, model in enumerate(self.models):
            try:
                response = await model.request(messages, tools, settings)
            except TetherError as exc:
                failures.append(f"{model.name}: {exc.error_class}: {exc.message}")
                last = exc
                if index + 1 < len(self.models):
                    logger.warning(
                        "model %s failed (%s); falling back to %s",
                        model.name,
                        exc.error_class,
                        self.models[index + 1].name,
                    )
                continue
            if index == 0:
                return response
            return dataclasses.replace(response, degraded=True)
        assert last is not None
        raise ModelError(
            "every model failed: " + "; ".join(failures),
            error_class=last.error_class,
            retryable=last.retryable,
        )
