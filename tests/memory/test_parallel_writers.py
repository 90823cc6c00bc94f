"""Several processes write one memory directory while another consolidates it: nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tether.memory import Memory
from tether.memory.files import parse_facts

WRITERS = 4
ENTRIES = 40

WRITER = textwrap.dedent(
    """
    import sys
    from tether.memory import Memory

    home, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    memory = Memory(home, max_log_bytes=2000, max_memory_chars=3000)
    for i in range(count):
        text = f"writer {writer} wrote entry {i} of the parallel test"
        memory.remember(text, run_id=f"w{writer}")
        memory.update_state({f"writer-{writer}": i})
    """
)

CONSOLIDATOR = textwrap.dedent(
    """
    import sys, time
    from tether.memory import Memory

    memory = Memory(sys.argv[1], max_log_bytes=2000, max_memory_chars=3000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        memory.consolidate(include_today=True)
        memory.search("parallel entry")
        if open(sys.argv[2]).read() == "stop":
            break
    """
)


def test_parallel_writers_and_a_consolidator_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "writer.py").write_text(WRITER)
    (tmp_path / "consolidator.py").write_text(CONSOLIDATOR)
    signal = tmp_path / "signal"
    signal.write_text("go")
    consolidator = subprocess.Popen(
        [sys.executable, str(tmp_path / "consolidator.py"), str(home), str(signal)]
    )
    writers = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "writer.py"), str(home), str(w), str(ENTRIES)]
        )
        for w in range(WRITERS)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0] * WRITERS
    signal.write_text("stop")
    assert consolidator.wait(timeout=120) == 0

    memory = Memory(home, max_log_bytes=2000, max_memory_chars=3000)
    memory.consolidate(include_today=True)
    facts = parse_facts((home / "MEMORY.md").read_text())
    overflow = home / "memory" / "archive" / "facts-overflow.md"
    facts += parse_facts(overflow.read_text()) if overflow.exists() else []
    texts = sorted(f.split(" _(")[0] for f in facts)
    expected = sorted(
        f"writer {w} wrote entry {i} of the parallel test"
        for w in range(WRITERS)
        for i in range(ENTRIES)
    )
    assert texts == expected, "every entry is kept exactly once"
    assert memory.state() == {f"writer-{w}": ENTRIES - 1 for w in range(WRITERS)}
    assert not list(home.rglob("*.tmp")), "no temporary file is left behind"
    hit = memory.search("writer 3 wrote entry 17")[0]
    assert hit.text.startswith("writer 3 wrote entry 17 of the parallel test")
