"""User feedback: a satisfaction score (1 to 5) per run, with an optional comment.

:func:`feedback_book` keeps it in the ``feedback`` table of a SQLite store (schema 11) or
in memory. The latest feedback for a run replaces earlier feedback. ``tether feedback
RUN_ID --score 4`` records it from the command line; ``tether stats`` reports it.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tether.clock import Clock
from tether.errors import ConfigurationError, RunNotFoundError
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = ["Feedback", "FeedbackBook", "feedback_book"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """What a person said about one run."""

    run_id: str
    score: int
    """1 (bad) to 5 (excellent)."""
    comment: str | None
    by: str | None
    at: datetime


class FeedbackBook(Protocol):
    """Where feedback is kept."""

    async def record(
        self, run_id: str, score: int, *, comment: str | None = None, by: str | None = None
    ) -> Feedback:
        """Keep feedback for a run (replacing earlier feedback for it).

        Raises:
            ConfigurationError: ``score`` is not an integer from 1 to 5.
            RunNotFoundError: No run has this id.
        """
        ...

    async def get(self, run_id: str) -> Feedback | None:
        """The run's feedback, or ``None``."""
        ...

    async def all(self) -> list[Feedback]:
        """Every feedback kept, oldest first."""
        ...


def feedback_book(store: Store, *, clock: Clock | None = None) -> FeedbackBook:
    """Return the feedback kept in ``store``.

    Args:
        store: A SQLite store (its ``feedback`` table, judged on the database clock) or an
            in-memory store.
        clock: The clock of an in-memory store's feedback. Default: the store's.

    Raises:
        ConfigurationError: The store keeps no feedback.
    """
    if isinstance(store, SqliteStore):
        return _SqliteFeedback(store)
    if isinstance(store, InMemoryStore):
        kept = _memory.get(store)
        if kept is None:
            kept = _memory[store] = {}
        return _MemoryFeedback(store, kept, clock or store._clock)
    raise ConfigurationError(f"{type(store).__name__} keeps no feedback")


def _check(score: object) -> int:
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ConfigurationError(f"a score is an integer from 1 to 5, not {score!r}")
    return score


async def _known(store: Store, run_id: str) -> None:
    if await store.get_run(run_id) is None:
        raise RunNotFoundError(f"no run {run_id}")


_memory: weakref.WeakKeyDictionary[InMemoryStore, dict[str, Feedback]] = weakref.WeakKeyDictionary()


class _MemoryFeedback:
    def __init__(self, store: InMemoryStore, kept: dict[str, Feedback], clock: Clock) -> None:
        self._store = store
        self._kept = kept
        self._clock = clock

    async def record(
        self, run_id: str, score: int, *, comment: str | None = None, by: str | None = None
    ) -> Feedback:
        _check(score)
        await _known(self._store, run_id)
        made = Feedback(run_id=run_id, score=score, comment=comment, by=by, at=self._clock.now())
        self._kept[run_id] = made
        return made

    async def get(self, run_id: str) -> Feedback | None:
        return self._kept.get(run_id)

    async def all(self) -> list[Feedback]:
        return sorted(self._kept.values(), key=lambda f: f.at)


class _SqliteFeedback:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(
        self, run_id: str, score: int, *, comment: str | None = None, by: str | None = None
    ) -> Feedback:
        _check(score)
        await _known(self._store, run_id)

        def work(conn: sqlite3.Connection, now: float) -> Feedback:
            conn.execute(
                "INSERT OR REPLACE INTO feedback (run_id, score, comment, by_user, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, score, comment, by, now),
            )
            return _feedback((run_id, score, comment, by, now))

        return await self._store.write(work)

    async def get(self, run_id: str) -> Feedback | None:
        rows = self._store.query(
            "SELECT run_id, score, comment, by_user, at FROM feedback WHERE run_id = ?", run_id
        )
        return _feedback(rows[0]) if rows else None

    async def all(self) -> list[Feedback]:
        rows = self._store.query(
            "SELECT run_id, score, comment, by_user, at FROM feedback ORDER BY at, run_id"
        )
        return [_feedback(row) for row in rows]


def _feedback(row: Sequence[Any]) -> Feedback:
    run_id, score, comment, by, at = row
    return Feedback(
        run_id=run_id,
        score=int(score),
        comment=comment,
        by=by,
        at=datetime.fromtimestamp(at, UTC),
    )
