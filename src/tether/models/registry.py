"""Models by name: ``"local"``, ``"openai:<model>"``, ``"anthropic:<model>"``.

``Agent(model="openai:gpt-4.1")`` goes through :func:`resolve_model`. Remote models come
wrapped in :class:`~tether.models.ResilientModel` (retries with backoff and a circuit
breaker, default settings); build the adapter yourself to change them.
"""

from __future__ import annotations

from tether.errors import ConfigurationError
from tether.models.base import Model

__all__ = ["resolve_model"]

_FORMS = "'local', 'openai:<model>' or 'anthropic:<model>'"


def resolve_model(model: Model | str) -> Model:
    """Return the model a name stands for (a :class:`Model` is returned as it is).

    Args:
        model: ``"local"`` (:class:`~tether.models.LocalModel`, offline),
            ``"openai:<model>"`` (:class:`~tether.models.OpenAIModel`; ``OPENAI_BASE_URL``
            points it at any OpenAI-compatible server), ``"anthropic:<model>"``
            (:class:`~tether.models.AnthropicModel`), or a model object.

    Raises:
        ConfigurationError: An unknown name, a missing API key, or a missing extra.
    """
    if not isinstance(model, str):
        return model
    provider, _, name = model.partition(":")
    if provider == "local" and not name:
        from tether.models.local import LocalModel

        return LocalModel()
    if provider in ("openai", "anthropic") and name:
        from tether.models.resilient import ResilientModel

        if provider == "openai":
            from tether.models.openai import OpenAIModel

            return ResilientModel(OpenAIModel(name))
        from tether.models.anthropic import AnthropicModel

        return ResilientModel(AnthropicModel(name))
    raise ConfigurationError(f"unknown model {model!r}: use {_FORMS}, or a Model object")
