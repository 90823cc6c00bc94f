"""Model adapters and the :class:`Model` protocol they implement."""

from tether.models.base import Model, ModelSettings

__all__ = ["Model", "ModelSettings"]
