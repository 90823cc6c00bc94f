"""Models: the :class:`Model` protocol, provider adapters, retries and fallbacks.

- :class:`LocalModel`: llama.cpp in process, offline (the ``local`` extra).
- :class:`OpenAIModel`: OpenAI and any OpenAI-compatible server.
- :class:`AnthropicModel`: Anthropic's Messages API.
- :class:`ResilientModel`: retries with backoff and a circuit breaker around a model.
- :class:`FallbackModel`: the next model serves when one fails.
- :func:`resolve_model`: ``"local"``, ``"openai:<model>"``, ``"anthropic:<model>"``.

The adapters import their SDKs when first used, so ``import tether`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.models.base import Model, ModelSettings, close_model
from tether.models.fallback import FallbackModel
from tether.models.pricing import FREE, Price, cost_usd
from tether.models.registry import resolve_model
from tether.models.resilient import ResilientModel

if TYPE_CHECKING:
    from tether.models.anthropic import AnthropicModel
    from tether.models.local import LocalModel
    from tether.models.openai import OpenAIModel

__all__ = [
    "FREE",
    "AnthropicModel",
    "FallbackModel",
    "LocalModel",
    "Model",
    "ModelSettings",
    "OpenAIModel",
    "Price",
    "ResilientModel",
    "close_model",
    "cost_usd",
    "resolve_model",
]

_LAZY = {
    "AnthropicModel": "tether.models.anthropic",
    "LocalModel": "tether.models.local",
    "OpenAIModel": "tether.models.openai",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tether.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
