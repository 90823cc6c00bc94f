"""Consolidation: daily logs distilled into ``MEMORY.md``, with provenance, then archived.

Deterministic: each entry of kind ``fact`` or ``decision`` (and each entry a person wrote
without a kind) becomes a fact line; facts with the same words (case, spacing and
punctuation aside) are merged and keep every run they came from and the days they were
seen. When ``MEMORY.md`` would outgrow its size, the facts seen least recently move to
``memory/archive/facts-overflow.md``, where search still finds them: the size is met by
moving, never by dropping or refusing. Consolidated logs move to ``memory/archive/``.

A crash part-way is safe: ``MEMORY.md`` is written before any log is archived, and
consolidating the same log again merges into the same facts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date

from tether.memory.files import MemoryFiles, parse_entries, parse_facts

__all__ = ["Consolidation", "consolidate_locked"]

PROMOTED_KINDS = frozenset({"fact", "decision"})
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
    """Consolidate the daily logs dated ``through`` or earlier. Hold ``files.locked()``."""
    logs = [(day, path) for day, path in files.daily_logs() if day <= through]
    facts = _read_facts(files.read(files.memory_md))
    by_key = {_key(f.text): f for f in facts}
    entries = added = merged = 0
    for day, path in logs:
        for entry in parse_entries(files.read(path)):
            entries += 1
            parts = [p.strip() for p in entry.heading.split("·")]
            kind = parts[1] if len(parts) > 1 else None
            if kind is not None and kind not in PROMOTED_KINDS:
                continue
            text = " ".join(entry.text.split())
            fact = by_key.get(_key(text))
            if fact is None:
                fact = by_key[_key(text)] = _Fact(text)
                facts.append(fact)
                added += 1
            else:
                merged += 1
            fact.seen(day, entry.run_id)
    kept, moved = _fit(facts, max_memory_chars)
    if moved:
        overflow = files.archive / "facts-overflow.md"
        previous = files.read(overflow) or _OVERFLOW_HEADER
        files.write(overflow, previous + "".join(f.render() + "\n" for f in moved))
    if logs or moved or added or merged:
        files.write(files.memory_md, _HEADER + "".join(f.render() + "\n" for f in kept))
    for _, path in logs:
        target = files.archive / path.name
        files.write(target, files.read(target) + files.read(path))
        os.unlink(path)
    return Consolidation(
        logs=tuple(p.name for _, p in logs),
        entries=entries,
        added=added,
        merged=merged,
        overflowed=len(moved),
    )


def _read_facts(markdown: str) -> list[_Fact]:
    facts = []
    for line in parse_facts(markdown):
        found = _PROVENANCE.search(line)
        if found is None:
            facts.append(_Fact(line))
            continue
        runs = [r.strip() for r in (found.group("runs") or "").split(",") if r.strip()]
        first = date.fromisoformat(found.group("first"))
        last = date.fromisoformat(found.group("last")) if found.group("last") else first
        facts.append(_Fact(line[: found.start()].strip(), runs, first, last))
    return facts


def _fit(facts: list[_Fact], max_chars: int) -> tuple[list[_Fact], list[_Fact]]:
    """The facts that fit in ``max_chars``; the least recently seen move out first."""
    size = len(_HEADER) + sum(len(f.render()) + 1 for f in facts)
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
