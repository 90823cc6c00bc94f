"""Stores of run journals: the :class:`Store` protocol and its implementations."""

from tether.store.base import Store
from tether.store.memory import InMemoryStore

__all__ = ["InMemoryStore", "Store"]
