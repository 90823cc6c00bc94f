"""The external ledger: a separate database that records every effect, like a payment API.

Workers write to it from their tools; the supervisor never kills it (SQLite commits are
atomic, so a killed worker leaves either a whole row or none). ``transfers`` enforces
idempotency keys the way a payment API does: the first call with a key takes effect, a
repeat returns the first result.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    tool TEXT NOT NULL, run_id TEXT NOT NULL, step INTEGER NOT NULL, key TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step INTEGER NOT NULL, amount INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events_log (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, text TEXT NOT NULL
);
"""


def path() -> Path:
    """The ledger file, from ``CHAOS_LEDGER``."""
    return Path(os.environ["CHAOS_LEDGER"])


def connect(location: Path | None = None) -> sqlite3.Connection:
    """Open the ledger (creating its tables) in autocommit mode."""
    connection = sqlite3.connect(location or path(), isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


def record_attempt(db: sqlite3.Connection, tool: str, run_id: str, step: int, key: str) -> None:
    """Log that a tool function was entered (before its effect)."""
    db.execute(
        "INSERT INTO attempts VALUES (?, ?, ?, ?, ?)", (tool, run_id, step, key, os.getpid())
    )
