"""The search index of a memory directory: SQLite FTS5 over its Markdown, kept in sync.

The files are the truth; the index is derived. Before each search, every Markdown file's
size and modification time are compared with what was indexed; a file whose size or
time changed is read again, and indexed again when its sha256 changed too. So entries a
person edits or adds by hand are found. Deleting ``index.db`` is always safe.

Indexed: an entry's text, and its kind and run id (not its time, so numbers in a query
do not match clock times). ``MEMORY.md``: each fact and each paragraph of other text.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tether.memory.files import MemoryFiles, memory_sections, parse_entries

__all__ = ["Hit", "MemoryIndex"]

_VERSION = 2
"""Bumped when the index's tables change; an index of another version is rebuilt."""
_SCHEMA = """
DROP TABLE IF EXISTS files;
DROP TABLE IF EXISTS sections;
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT);
CREATE VIRTUAL TABLE sections USING fts5(
    text, tags, heading UNINDEXED, path UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
"""
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}Z\s*·?\s*")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One search result: where it is, its heading, and its text."""

    path: str
    """Relative to the memory home."""
    heading: str
    text: str


class MemoryIndex:
    """FTS5 search over a :class:`~tether.memory.files.MemoryFiles` directory."""

    def __init__(self, files: MemoryFiles) -> None:
        self.files = files

    def search(self, query: str, *, limit: int = 5) -> list[Hit]:
        """Sections matching every word of ``query`` (else any word), best first.

        ``query`` is plain text (untrusted); FTS5 operators in it are treated as words.
        """
        words = _WORD.findall(query)
        if not words:
            return []
        with self._connection() as conn:
            self._sync(conn)
            for joiner in (" AND ", " OR "):
                match = joiner.join('"' + w.replace('"', "") + '"' for w in words)
                rows = conn.execute(
                    "SELECT path, heading, text FROM sections WHERE sections MATCH ? "
                    "ORDER BY bm25(sections, 1.0, 0.5) LIMIT ?",
                    (match, limit),
                ).fetchall()
                if rows:
                    return [Hit(path=p, heading=h, text=t) for p, h, t in rows]
        return []

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self.files.home.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.files.index_db, timeout=30.0)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
                conn.executescript(_SCHEMA + f"PRAGMA user_version = {_VERSION};")
            yield conn

    def _sync(self, conn: sqlite3.Connection) -> None:
        home = self.files.home
        known = {
            path: (size, mtime, digest)
            for path, size, mtime, digest in conn.execute("SELECT * FROM files")
        }
        present: set[str] = set()
        with conn:
            for path in self.files.markdown_files():
                name = path.relative_to(home).as_posix()
                present.add(name)
                try:
                    stat = path.stat()
                    if name in known and known[name][:2] == (stat.st_size, stat.st_mtime_ns):
                        continue
                    text = path.read_text(encoding="utf-8", errors="replace")
                except FileNotFoundError:  # replaced or archived meanwhile
                    present.discard(name)
                    continue
                digest = hashlib.sha256(text.encode()).hexdigest()
                if name in known and known[name][2] == digest:
                    conn.execute(
                        "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                        (stat.st_size, stat.st_mtime_ns, name),
                    )
                    continue
                self._index_file(conn, name, path, text)
                conn.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                    (name, stat.st_size, stat.st_mtime_ns, digest),
                )
            for gone in set(known) - present:
                conn.execute("DELETE FROM files WHERE path = ?", (gone,))
                conn.execute("DELETE FROM sections WHERE path = ?", (gone,))

    def _index_file(self, conn: sqlite3.Connection, name: str, path: Path, text: str) -> None:
        conn.execute("DELETE FROM sections WHERE path = ?", (name,))
        if path.name == "MEMORY.md" or path.name.startswith("facts-"):
            rows = memory_sections(text)
        else:
            rows = [(e.heading, e.text) for e in parse_entries(text)]
            if not rows and text.strip():
                rows = [("", text.strip())]  # a hand-written file without "## " entries
        conn.executemany(
            "INSERT INTO sections (text, tags, heading, path) VALUES (?, ?, ?, ?)",
            [(body, _TIME.sub("", heading), heading, name) for heading, body in rows],
        )
