"""Long-term memory in files a person can read: daily logs, ``MEMORY.md``, ``state.json``.

See :mod:`tether.memory.files` for the layout and :mod:`tether.memory.consolidate` for how
daily logs become curated facts.
"""

from tether.memory.consolidate import Consolidation
from tether.memory.files import Entry
from tether.memory.home import KINDS, MAX_ENTRY_CHARS, Memory, default_home
from tether.memory.index import Hit
from tether.memory.tools import memory_tools

__all__ = [
    "KINDS",
    "MAX_ENTRY_CHARS",
    "Consolidation",
    "Entry",
    "Hit",
    "Memory",
    "default_home",
    "memory_tools",
]
