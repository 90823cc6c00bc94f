"""The memory tools an agent can use: ``remember``, ``recall`` and ``search_memory``."""

from __future__ import annotations

from typing import Literal

from tether.errors import ConfigurationError
from tether.memory.home import Memory
from tether.tools import RunContext, Tool, tool

__all__ = ["memory_tools"]


def memory_tools(
    memory: Memory, *, recall_chars: int = 6000, search_limit: int = 5
) -> tuple[Tool, ...]:
    """Build the three memory tools over ``memory``.

    ============== ======= ============ ====================================================
    Tool           Risk    Effect       What it does
    ============== ======= ============ ====================================================
    ``remember``   write   idempotent   appends to today's log, naming the run (a repeat of
                                        the same text by the same run adds nothing)
    ``recall``     read    read         ``MEMORY.md`` and the logs of today and yesterday
    ``search_memory`` read read         full-text search over every memory file
    ============== ======= ============ ====================================================

    Args:
        memory: The memory directory.
        recall_chars: ``recall`` returns at most this many characters. Default 6,000.
        search_limit: ``search_memory`` returns at most this many hits. Default 5.

    Raises:
        ConfigurationError: ``recall_chars`` is below 200 or ``search_limit`` below 1.
    """
    if recall_chars < 200 or search_limit < 1:
        raise ConfigurationError(
            "memory_tools needs recall_chars >= 200 and search_limit >= 1, not "
            f"{recall_chars} and {search_limit}"
        )

    @tool(name="remember", risk="write", effect="idempotent", timeout=30)
    def remember(
        ctx: RunContext, text: str, kind: Literal["fact", "decision", "note"] = "fact"
    ) -> str:
        """Save something worth knowing in later runs: a fact, a decision, or a note.

        Args:
            ctx: The calling run (named in the entry).
            text: What to remember, in one or a few sentences.
            kind: "fact" and "decision" are kept in MEMORY.md; "note" stays in the daily log.
        """
        memory.remember(text, kind=kind, run_id=ctx.run_id)
        return f"remembered in {memory.files.daily_log(memory.today()).name}"

    @tool(name="recall", risk="read", effect="read", timeout=30)
    def recall() -> str:
        """Read long-term memory: the curated facts and today's and yesterday's logs."""
        return memory.recall(max_chars=recall_chars)

    @tool(name="search_memory", risk="read", effect="read", timeout=30)
    def search_memory(query: str) -> str:
        """Search all of memory (facts, daily logs and archived logs) for words.

        Args:
            query: Words to look for.
        """
        hits = memory.search(query, limit=search_limit)
        if not hits:
            return f"nothing in memory matches {query!r}"
        return "\n\n".join(f"[{h.path}] {h.heading}\n{h.text}" for h in hits)

    return (remember, recall, search_memory)
