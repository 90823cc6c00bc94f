"""Memory writers killed with SIGKILL at random moments lose no acknowledged entry."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tether.memory import Memory
from tether.memory.files import parse_entries, parse_facts

WRITER = textwrap.dedent(
    """
    import sys
    from tether.memory import Memory

    home, writer = sys.argv[1], sys.argv[2]
    memory = Memory(home, max_log_bytes=1500, max_memory_chars=2000)
    for i in range(10_000):
        memory.remember(f"killed writer {writer} entry {i} survives", run_id=f"k{writer}")
        memory.update_state({f"writer-{writer}": i})
        print(i, flush=True)
    """
)
ENTRY = re.compile(r"killed writer (\d+) entry (\d+) survives")


def test_sigkilled_writers_lose_no_acknowledged_entry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    chance = random.Random(7)
    acknowledged: set[str] = set()
    for round_ in range(6):
        writers = {
            f"{round_}{w}": subprocess.Popen(
                [sys.executable, str(script), str(home), f"{round_}{w}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(3)
        }
        for name, process in writers.items():
            assert process.stdout is not None
            # Kill each writer at a random point after it has written a few entries.
            for _ in range(chance.randint(3, 25)):
                line = process.stdout.readline()
                if not line:
                    break
                acknowledged.add(f"killed writer {name} entry {int(line)} survives")
            time.sleep(chance.random() * 0.05)
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=30)
            assert process.returncode == -signal.SIGKILL, err
            acknowledged |= {f"killed writer {name} entry {int(i)} survives" for i in out.split()}

    assert len(acknowledged) > 50, "the writers must have written before being killed"
    memory = Memory(home, max_log_bytes=1500, max_memory_chars=2000)
    # Every file parses into whole entries: no torn write is visible.
    for path in home.rglob("*.md"):
        for entry in parse_entries(path.read_text()):
            assert ENTRY.fullmatch(entry.text), (path, entry.text)
    assert isinstance(json.loads((home / "state.json").read_text()), dict)

    memory.consolidate(include_today=True)
    facts = parse_facts((home / "MEMORY.md").read_text())
    overflow = home / "memory" / "archive" / "facts-overflow.md"
    facts += parse_facts(overflow.read_text()) if overflow.exists() else []
    texts = [f.split(" _(")[0] for f in facts]
    assert len(texts) == len(set(texts)), "no fact twice"
    assert acknowledged <= set(texts), "every acknowledged entry is kept"
    assert not list(home.rglob("*.tmp")), "killed writers' temporary files are removed"
