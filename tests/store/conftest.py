from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tether.store import InMemoryStore, SqliteStore, Store
from tether.testing import FakeClock


@dataclass
class Harness:
    """A store under test and how to let its clock move forward."""

    store: Store
    wait: Callable[[float], Awaitable[None]]
    """Let ``seconds`` pass on the store's clock (really, for SQLite)."""


def assert_intact(path: Path) -> None:
    """The file passes SQLite's own checks: structure and foreign keys."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.fixture(params=["memory", "sqlite"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(store=InMemoryStore(clock=clock), wait=advance)
        return
    path = tmp_path / "nested" / "tether.db"
    store = SqliteStore(path)
    yield Harness(store=store, wait=anyio.sleep)
    await store.close()
    assert_intact(path)
