"""``Memory``: remember, recall, search and consolidate one memory directory.

::

    memory = Memory("./.tether/home")
    memory.remember("The customer prefers email.", kind="fact", run_id=run.run_id)
    memory.search("email")            # -> [Hit(path="memory/2026-12-06.md", ...)]
    memory.consolidate()              # yesterday's logs -> MEMORY.md, logs archived
    agent = Agent(..., tools=[*memory_tools(memory)])
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError
from tether.memory.consolidate import Consolidation, consolidate_locked
from tether.memory.files import Entry, MemoryFiles, format_entry, parse_entries
from tether.memory.index import Hit, MemoryIndex
from tether.redact import DEFAULT_REDACTOR, Redactor

__all__ = ["DEFAULT_HOME", "KINDS", "MAX_ENTRY_CHARS", "Memory", "default_home"]

DEFAULT_HOME = Path(".tether") / "home"
KINDS = ("fact", "decision", "note")
"""What an entry is. Facts and decisions are promoted to ``MEMORY.md`` by consolidation;
notes stay in the (archived, searchable) daily logs."""
MAX_ENTRY_CHARS = 4000
"""Longest text one ``remember`` accepts."""


def default_home() -> Path:
    """``TETHER_HOME`` if set, else ``./.tether/home``."""
    return Path(os.environ.get("TETHER_HOME") or DEFAULT_HOME)


class Memory:
    """A memory directory a person can read and edit (see :mod:`tether.memory.files`).

    Safe to share between threads, processes and the consolidator: writes take the
    directory's lock and replace files atomically.

    Args:
        home: The directory. Default :func:`default_home`.
        clock: Dates the daily logs (UTC). Default the system clock.
        max_log_bytes: When the daily logs not yet consolidated exceed this many
            bytes, ``remember`` consolidates them (today's included) before it
            writes: memory never refuses a write because it is full. Default 50,000.
        max_memory_chars: ``MEMORY.md`` is kept within this size by moving the facts seen
            least recently to the archive (still searchable). Default 16,000.
        redactor: Replaces secrets (API keys, tokens, passwords, marked fields) in what is
            remembered and in state values before they reach a file. Default
            :data:`~tether.redact.DEFAULT_REDACTOR`.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        max_log_bytes: int = 50_000,
        max_memory_chars: int = 16_000,
        redactor: Redactor = DEFAULT_REDACTOR,
    ) -> None:
        if max_log_bytes < 1000 or max_memory_chars < 1000:
            raise ConfigurationError(
                "Memory needs max_log_bytes and max_memory_chars of at least 1000, not "
                f"{max_log_bytes} and {max_memory_chars}"
            )
        self.files = MemoryFiles(default_home() if home is None else home)
        self.index = MemoryIndex(self.files)
        self.clock = clock or SystemClock()
        self.max_log_bytes = max_log_bytes
        self.max_memory_chars = max_memory_chars
        self.redactor = redactor

    @property
    def home(self) -> Path:
        """The memory directory."""
        return self.files.home

    def today(self) -> date:
        """Today's date in UTC, by the memory's clock."""
        return self.clock.now().date()

    def remember(self, text: str, *, kind: str = "fact", run_id: str | None = None) -> Entry:
        """Append an entry to today's log and return it.

        Secrets in ``text`` are redacted first. Repeating the same text for the same run
        on the same day adds nothing, even after that day's log was consolidated (a
        retried or resumed call is not recorded twice).

        Raises:
            ValueError: ``text`` is empty or longer than :data:`MAX_ENTRY_CHARS`, or
                ``kind`` is not one of :data:`KINDS`.
        """
        text = self.redactor.redact_text(text.strip())
        if not text:
            raise ValueError("nothing to remember: the text is empty")
        if len(text) > MAX_ENTRY_CHARS:
            raise ValueError(
                f"an entry holds at most {MAX_ENTRY_CHARS} characters, not {len(text)}; "
                "remember the essentials, or split it"
            )
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        now = self.clock.now()
        markdown = format_entry(now, kind, run_id, text)
        entry = parse_entries(markdown)[0]
        files = self.files
        with files.locked():
            path = files.daily_log(now.date())
            current = files.read(path)
            # Today's log, and its part already consolidated into the archive.
            today = current + "\n" + files.read(files.archive / path.name)
            if run_id is not None and any(
                e.run_id == run_id and e.text == entry.text for e in parse_entries(today)
            ):
                return entry
            if self._unconsolidated_bytes() + len(markdown.encode()) > self.max_log_bytes:
                consolidate_locked(
                    files, through=now.date(), max_memory_chars=self.max_memory_chars
                )
                current = files.read(path)
            separator = "\n" if current and not current.endswith("\n\n") else ""
            header = "" if current else f"# {now.date()}\n\n"
            files.write(path, f"{current}{separator}{header}{markdown}")
        return entry

    def recall(self, *, max_chars: int = 6000) -> str:
        """``MEMORY.md`` and the logs of today and yesterday, newest last.

        At most ``max_chars`` characters; the oldest text is cut first, with a marker.

        Raises:
            ValueError: ``max_chars`` is below 200.
        """
        if max_chars < 200:
            raise ValueError(f"recall needs max_chars of at least 200, not {max_chars}")
        today = self.today()
        parts = []
        for title, path in (
            ("MEMORY.md", self.files.memory_md),
            ("yesterday", self.files.daily_log(today - timedelta(days=1))),
            ("today", self.files.daily_log(today)),
        ):
            text = self.files.read(path).strip()
            if text:
                parts.append(f"=== {title} ({path.relative_to(self.home).as_posix()}) ===\n{text}")
        text = "\n\n".join(parts) or "(memory is empty)"
        if len(text) <= max_chars:
            return text
        kept = text[len(text) - max_chars + 100 :]  # the marker needs less than 100
        cut = len(text) - len(kept)
        return f"[tether: {cut} older characters not shown; use search_memory]\n{kept}"

    def search(self, query: str, *, limit: int = 5) -> list[Hit]:
        """Entries and facts matching ``query`` (plain words), best first.

        Hand edits are included: the index catches up with the files first.
        """
        if not self.home.is_dir():
            return []  # nothing remembered yet; searching creates nothing
        with self.files.locked():
            return self.index.search(query, limit=limit)

    def consolidate(self, *, include_today: bool = False) -> Consolidation:
        """Distil the daily logs before today (or through today) into ``MEMORY.md``.

        Duplicates are merged, provenance kept, and the logs archived.
        """
        through = self.today() - timedelta(days=0 if include_today else 1)
        if not self.home.is_dir():  # nothing remembered yet; a mistyped home stays absent
            return Consolidation(logs=(), entries=0, added=0, merged=0, overflowed=0)
        with self.files.locked():
            return consolidate_locked(
                self.files, through=through, max_memory_chars=self.max_memory_chars
            )

    def state(self) -> dict[str, Any]:
        """``state.json`` as a dict (empty when missing)."""
        return self.files.read_state()

    def update_state(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into ``state.json`` and return the new state.

        A key set to ``None`` is removed. Atomic, and safe against concurrent updates.

        Raises:
            ValueError: A value is not JSON.
            ConfigurationError: ``state.json`` holds something other than a JSON object.
        """
        try:
            json.dumps(changes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state must be JSON: {exc}") from None
        changes = self.redactor.redact(changes)
        with self.files.locked():
            state = self.files.read_state()
            for key, value in changes.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
            self.files.write(
                self.files.state_json, json.dumps(state, indent=2, sort_keys=True) + "\n"
            )
        return state

    def _unconsolidated_bytes(self) -> int:
        return sum(path.stat().st_size for _, path in self.files.daily_logs())
