"""The memory directory: human-readable Markdown and JSON, written safely by many processes.

::

    <home>/
      MEMORY.md                    curated facts, each with the runs it came from
      state.json                   structured state (a JSON object)
      memory/YYYY-MM-DD.md         daily logs: one "## " entry per remembered item
      memory/archive/              consolidated daily logs, and facts MEMORY.md had no room for
      index.db                     the search index (derived; rebuilt from the files)
      .lock                        the writers' lock

Every write takes an exclusive ``flock`` on ``.lock`` and replaces its file atomically
(write a temporary file, ``fsync``, ``os.replace``), so concurrent writers (runs in
several processes, the consolidator) never corrupt or lose an entry, and a reader always
sees a whole file. People may edit the files by hand; the index notices.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tether.errors import ConfigurationError

__all__ = [
    "Entry",
    "MemoryFiles",
    "format_entry",
    "memory_sections",
    "parse_entries",
    "parse_facts",
    "split_memory",
]

_HEADING = re.compile(r"^(?P<level>##?) (?P<heading>.*)$", re.MULTILINE)
"""A level-1 heading (a log's date) ends an entry; a level-2 heading starts one."""
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.md$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One ``## `` section of a daily log: its heading and its text."""

    heading: str
    """``HH:MM:SSZ · kind · run <id>`` when tether wrote it; anything when a person did."""
    text: str

    @property
    def run_id(self) -> str | None:
        """The run named in the heading (``run <id>``), if any."""
        found = re.search(r"\brun (\S+)", self.heading)
        return found.group(1) if found else None


def format_entry(at: datetime, kind: str, run_id: str | None, text: str) -> str:
    """The Markdown of one daily-log entry."""
    heading = f"{at:%H:%M:%S}Z · {kind}" + (f" · run {run_id}" if run_id else "")
    # A line of the text that looks like a "#" or "##" heading is demoted to "###" or
    # "####", so it can neither end this entry nor start another.
    body = re.sub(r"^(##?) ", r"##\1 ", text.strip(), flags=re.MULTILINE)
    return f"## {heading}\n{body}\n"


def parse_entries(markdown: str) -> list[Entry]:
    """The ``## `` entries of a daily log; text before the first one is ignored."""
    marks = list(_HEADING.finditer(markdown))
    ends = [m.start() for m in marks[1:]] + [len(markdown)]
    entries = []
    for mark, end in zip(marks, ends[: len(marks)], strict=True):
        text = markdown[mark.end() : end].strip()
        if mark.group("level") == "##" and text:
            entries.append(Entry(heading=mark.group("heading").strip(), text=text))
    return entries


def split_memory(markdown: str) -> list[tuple[str | None, str]]:
    """``MEMORY.md`` as blocks, in order, that join back into the same text.

    A ``- `` bullet line (with its indented continuation lines) is ``(fact, lines)``;
    everything else (headings, prose, other lists) is ``(None, lines)``, which
    consolidation keeps as it is.
    """
    blocks: list[list[Any]] = []
    for line in markdown.splitlines(keepends=True):
        if line.startswith("- "):
            blocks.append([line[2:].strip(), line])
        elif line.startswith("  ") and line.strip() and blocks and blocks[-1][0] is not None:
            blocks[-1][0] += " " + line.strip()
            blocks[-1][1] += line
        elif blocks and blocks[-1][0] is None:
            blocks[-1][1] += line
        else:
            blocks.append([None, line])
    return [(fact, text) for fact, text in blocks]


def parse_facts(markdown: str) -> list[str]:
    """The ``- `` bullet lines of ``MEMORY.md`` (continuation lines joined)."""
    return [fact for fact, _ in split_memory(markdown) if fact is not None]


def memory_sections(markdown: str) -> list[tuple[str, str]]:
    """What search finds in ``MEMORY.md``: each fact, and each paragraph of other text.

    Each is ``(heading, text)``: the heading it follows, ``"fact"`` before any heading.
    """
    sections: list[tuple[str, str]] = []
    heading = "fact"
    for fact, text in split_memory(markdown):
        if fact is not None:
            sections.append((heading, fact))
            continue
        paragraph: list[str] = []
        for line in [*text.splitlines(), ""]:
            if line.startswith("#") or not line.strip():
                if paragraph:
                    sections.append((heading, " ".join(paragraph)))
                    paragraph = []
                if line.startswith("#"):
                    heading = line.lstrip("#").strip() or heading
            else:
                paragraph.append(line.strip())
    return sections


class MemoryFiles:
    """Paths, the writers' lock and atomic writes of one memory directory.

    Args:
        home: The directory; created on first write.
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        if self.home.exists() and not self.home.is_dir():
            raise ConfigurationError(f"memory home {self.home} exists and is not a directory")
        self.memory_md = self.home / "MEMORY.md"
        self.state_json = self.home / "state.json"
        self.logs = self.home / "memory"
        self.archive = self.logs / "archive"
        self.index_db = self.home / "index.db"

    def daily_log(self, day: date) -> Path:
        """The log file of ``day``."""
        return self.logs / f"{day.isoformat()}.md"

    def daily_logs(self) -> list[tuple[date, Path]]:
        """The daily logs not yet archived, oldest first."""
        if not self.logs.is_dir():
            return []
        found = []
        for path in self.logs.iterdir():
            if _DAY_FILE.match(path.name):
                with contextlib.suppress(ValueError):
                    found.append((date.fromisoformat(path.stem), path))
        return sorted(found)

    def markdown_files(self) -> list[Path]:
        """Every Markdown file the index covers: MEMORY.md, daily logs and the archive."""
        files = [self.memory_md] if self.memory_md.is_file() else []
        files += [path for _, path in self.daily_logs()]
        if self.archive.is_dir():
            files += sorted(p for p in self.archive.iterdir() if p.suffix == ".md")
        return files

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' lock (exclusive, across processes) for the block."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, path: Path) -> str:
        """The file's text, or ``""`` when it does not exist."""
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def write(self, path: Path, text: str) -> None:
        """Replace ``path`` with ``text`` atomically and durably. Hold :meth:`locked`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            # mkstemp makes the file owner-only; give it the mode a plain write would.
            os.fchmod(handle, _mode_of(path))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def remove_temporary(self) -> int:
        """Remove the temporary files of writers killed mid-write. Hold :meth:`locked`.

        Returns how many were removed. While the lock is held no write is in progress,
        so every temporary file left is stale.
        """
        removed = 0
        for folder in (self.home, self.logs, self.archive):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def read_state(self) -> dict[str, Any]:
        """``state.json`` as a dict (empty when missing).

        Raises:
            ConfigurationError: The file is not a JSON object (edited by hand?); it is
                left as it is.
        """
        text = self.read(self.state_json)
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{self.state_json} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigurationError(f"{self.state_json} must hold a JSON object")
        return value


def _mode_of(path: Path) -> int:
    """The permission bits ``path`` has, or a new file would get under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""The process umask, read once at import."""
