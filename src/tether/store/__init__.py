"""Stores of runs and journals: the :class:`Store` protocol and its implementations.

:func:`open_store` picks one from a URL: ``sqlite:///path.db`` (the default, a
:class:`SqliteStore`) or ``memory://`` (an :class:`InMemoryStore`).
"""

from tether.store.base import CLAIMABLE_BY_ID, Lease, Remembered, RunRecord, Store
from tether.store.memory import InMemoryStore
from tether.store.sqlite import SqliteStore
from tether.store.urls import open_store

__all__ = [
    "CLAIMABLE_BY_ID",
    "InMemoryStore",
    "Lease",
    "Remembered",
    "RunRecord",
    "SqliteStore",
    "Store",
    "open_store",
]
