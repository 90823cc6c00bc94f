"""Consolidation: daily logs distilled into ``MEMORY.md``, with provenance, then archived.

Deterministic: each entry except ``note`` entries (so ``fact``, ``decision``, and any
entry a person wrote by hand) becomes a fact line; facts with the same words (case, spacing and
punctuation aside) are merged and keep every run they came from and the days they were
seen. When ``MEMORY.md`` would outgrow its size, the facts seen least recently move to
``memory/archive/facts-overflow.md``, where search still finds them: the size is met by
moving, never by dropping or refusing. Consolidated logs move to ``memory/archive/``.

A crash part-way is safe: ``MEMORY.md`` is written before any log is archived,
consolidating the same log again merges into the same facts, a log already copied to the
archive is not copied twice, and the temporary files of killed writers are removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tether.memory.files import Entry, MemoryFiles, parse_entries, parse_facts, split_memory

__all__ = ["Consolidation", "consolidate_locked"]

KEPT_IN_LOGS = frozenset({"note"})
"""Entry kinds that stay in the (archived) logs; every other entry becomes a fact,
including those a person wrote by hand, whatever their heading says."""
_PROVENANCE = re.compile(
    r"\s*_\((?:runs: (?P<runs>[^;)]*)|by hand); (?P<first>\d{4}-\d{2}-\d{2})"
    r"(?: to (?P<last>\d{4}-\d{2}-\d{2}))?\)_$"
)
_HEADER = (
    "# Memory\n\n"
    "Facts kept across runs. `tether memory consolidate` adds them from the daily logs in\n"
    "`memory/`; edit freely. Each fact ends with the runs it came from and when it was seen.\n\n"
)
_OVERFLOW_HEADER = "# Facts moved out of MEMORY.md to keep it within its size\n\n"


@dataclass(slots=True)
class _Fact:
    text: str
    runs: list[str] = field(default_factory=list[str])
    first: date | None = None
    last: date | None = None

    def seen(self, day: date | None, run_id: str | None) -> None:
        if run_id and run_id not in self.runs:
            self.runs.append(run_id)
        if day is not None:
            self.first = day if self.first is None else min(self.first, day)
            self.last = day if self.last is None else max(self.last, day)

    def merge(self, other: _Fact) -> None:
        for run_id in other.runs:
            self.seen(None, run_id)
        for day in (other.first, other.last):
            self.seen(day, None)

    def render(self) -> str:
        if self.first is None:
            return f"- {self.text}"
        source = f"runs: {', '.join(self.runs)}" if self.runs else "by hand"
        span = (
            str(self.first) if self.last in (None, self.first) else f"{self.first} to {self.last}"
        )
        return f"- {self.text} _({source}; {span})_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Consolidation:
    """What one consolidation did."""

    logs: tuple[str, ...]
    """The daily logs consolidated and archived (file names)."""
    entries: int
    """Entries read from them."""
    added: int
    """New facts in ``MEMORY.md``."""
    merged: int
    """Entries merged into a fact already there."""
    overflowed: int
    """Facts moved to ``memory/archive/facts-overflow.md`` to keep the size."""


def consolidate_locked(
    files: MemoryFiles, *, through: date, max_memory_chars: int
) -> Consolidation:
    """Consolidate the daily logs dated ``through`` or earlier. Hold ``files.locked()``.

    Each fact is in ``MEMORY.md`` or in the overflow file, once: a fact seen again comes
    back from the overflow. The files are written so that a crash between two writes
    leaves a fact in both (merged by the next consolidation), never in neither.
    """
    logs = [(day, path) for day, path in files.daily_logs() if day <= through]
    overflow_path = files.archive / "facts-overflow.md"
    book = _Book(files.read(files.memory_md), files.read(overflow_path))
    for day, path in logs:
        for entry in parse_entries(files.read(path)):
            book.absorb(day, entry)
    kept, moved = _fit(book.facts, max_memory_chars - book.prose_chars)
    for fact in moved:
        book.archived[_key(fact.text)] = fact
    if moved:  # the moved facts reach the overflow before they leave MEMORY.md
        _write_facts(files, overflow_path, _OVERFLOW_HEADER, book.archived.values())
    if logs or moved or book.added or book.merged:
        _write_changed(files, files.memory_md, book.render(kept))
    if book.archived or overflow_path.exists():  # without the facts back in MEMORY.md
        kept_keys = {_key(f.text) for f in kept}
        remaining = [f for k, f in book.archived.items() if k not in kept_keys]
        _write_facts(files, overflow_path, _OVERFLOW_HEADER, remaining)
    for _, path in logs:
        _archive_log(files, path)
    files.remove_temporary()
    return Consolidation(
        logs=tuple(p.name for _, p in logs),
        entries=book.entries,
        added=book.added,
        merged=book.merged,
        overflowed=len(moved),
    )


class _Book:
    """The facts of ``MEMORY.md`` and of the overflow, and what absorbing entries did.

    ``MEMORY.md`` is kept as its blocks: facts are updated in place, and everything else
    a person wrote there (headings, prose, other lists) is written back as it was.
    """

    def __init__(self, memory_md: str, overflow: str) -> None:
        self.facts: list[_Fact] = []
        self.by_key: dict[str, _Fact] = {}
        self.blocks: list[_Fact | str] = []
        for line, raw in split_memory(memory_md):
            if line is None:
                self.blocks.append(raw)
                continue
            fact = _read_fact(line)
            key = _key(fact.text)
            if key in self.by_key:  # the same fact twice: one line, provenance merged
                self.by_key[key].merge(fact)
                continue
            self.by_key[key] = fact
            self.facts.append(fact)
            self.blocks.append(fact)
        self.prose_chars = sum(len(b) for b in self.blocks if isinstance(b, str)) or len(_HEADER)
        self.archived: dict[str, _Fact] = {}
        for fact in map(_read_fact, parse_facts(overflow)):
            key = _key(fact.text)
            same = self.by_key.get(key) or self.archived.get(key)
            if same is not None:  # left twice by a crash: merge
                same.merge(fact)
            else:
                self.archived[key] = fact
        self.entries = self.added = self.merged = 0

    def absorb(self, day: date, entry: Entry) -> None:
        """Count one log entry; promote it to a fact (new, merged, or back from overflow)."""
        self.entries += 1
        parts = [p.strip() for p in entry.heading.split("·")]
        if len(parts) > 1 and parts[1] in KEPT_IN_LOGS:
            return
        lines = (line.lstrip("#").strip() for line in entry.text.splitlines())
        text = " ".join(" ".join(lines).split())
        key = _key(text)
        fact = self.by_key.get(key)
        if fact is not None:
            self.merged += 1
        else:
            back = self.archived.get(key)
            self.merged += back is not None
            self.added += back is None
            fact = self.by_key[key] = back or _Fact(text)
            self.facts.append(fact)
        fact.seen(day, entry.run_id)

    def render(self, kept: list[_Fact]) -> str:
        """``MEMORY.md`` with ``kept`` facts: in place, then the new ones at the end."""
        keep = {id(f) for f in kept}
        parts: list[str] = []
        for block in self.blocks or [_HEADER]:
            if isinstance(block, str):
                parts.append(block)
            elif id(block) in keep:
                parts.append(block.render() + "\n")
                keep.discard(id(block))
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.extend(f.render() + "\n" for f in kept if id(f) in keep)
        return "".join(parts)


def _archive_log(files: MemoryFiles, path: Path) -> None:
    """Move a consolidated log to the archive (appended to a copy of the same day)."""
    target, text = files.archive / path.name, files.read(path)
    copied = files.read(target)
    if not copied.endswith(text):  # else a killed consolidation already copied it
        separator = "\n" if copied and not copied.endswith("\n\n") else ""
        files.write(target, copied + separator + text)
    os.unlink(path)


def _write_facts(files: MemoryFiles, path: Path, header: str, facts: Iterable[_Fact]) -> None:
    _write_changed(files, path, header + "".join(f.render() + "\n" for f in facts))


def _write_changed(files: MemoryFiles, path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds exactly that."""
    if files.read(path) != text:
        files.write(path, text)


def _read_fact(line: str) -> _Fact:
    """A fact line and its provenance.

    A provenance that does not parse (a hand edit with an impossible date) is kept as
    part of the text, so one bad line never stops consolidation.
    """
    found = _PROVENANCE.search(line)
    if found is None:
        return _Fact(line)
    try:
        first = date.fromisoformat(found.group("first"))
        last = date.fromisoformat(found.group("last")) if found.group("last") else first
    except ValueError:
        return _Fact(line)
    runs = [r.strip() for r in (found.group("runs") or "").split(",") if r.strip()]
    return _Fact(line[: found.start()].strip(), runs, first, last)


def _fit(facts: list[_Fact], max_chars: int) -> tuple[list[_Fact], list[_Fact]]:
    """The facts that fit in ``max_chars``; the least recently seen move out first."""
    size = sum(len(f.render()) + 1 for f in facts)
    if size <= max_chars:
        return facts, []
    order = sorted(range(len(facts)), key=lambda i: (facts[i].last or date.max, i))
    moving: set[int] = set()
    for index in order:
        if size <= max_chars:
            break
        moving.add(index)
        size -= len(facts[index].render()) + 1
    kept = [f for i, f in enumerate(facts) if i not in moving]
    return kept, [f for i, f in enumerate(facts) if i in moving]


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))
