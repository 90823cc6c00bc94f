"""``tether memory show | search | consolidate`` and the worker's daily consolidation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import InMemoryStore, Tether
from tether.memory import Memory
from tether.testing import FakeClock
from tether.worker import Worker


def tether(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env["TETHER_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "tether", "memory", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_show_search_and_consolidate_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    yesterday = datetime.now(UTC) - timedelta(days=1)
    memory = Memory(home, clock=FakeClock(start=yesterday))
    memory.remember("The VPN gateway is vpn-2.", run_id="run-x")
    memory.update_state({"cursor": 7})

    shown = tether("show", "--json", home=home)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["state"] == {"cursor": 7}
    assert "The VPN gateway is vpn-2." in next(iter(data["daily_logs"].values()))

    found = tether("search", "vpn gateway", "--json", home=home)
    assert found.returncode == 0, found.stderr
    assert [h["text"] for h in json.loads(found.stdout)] == ["The VPN gateway is vpn-2."]

    done = tether("consolidate", home=home)
    assert done.returncode == 0, done.stderr
    assert "consolidated 1 log(s), 1 entries: 1 new facts" in done.stdout
    assert "The VPN gateway is vpn-2. _(runs: run-x;" in (home / "MEMORY.md").read_text()
    assert tether("consolidate", home=home).stdout.strip() == "nothing to consolidate"

    text = tether("show", home=home).stdout
    assert "MEMORY.md" in text and "vpn-2" in text and "no daily logs waiting" in text


def test_an_empty_home_is_shown_empty_and_errors_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "nothing-yet"
    shown = tether("show", home=home)
    assert shown.returncode == 0 and "(empty)" in shown.stdout
    assert tether("search", "anything", home=home).stdout.strip() == "nothing matches 'anything'"
    assert not home.exists(), "reading creates nothing"

    home.mkdir()
    (home / "state.json").write_text("{broken")
    broken = tether("show", home=home)
    assert broken.returncode == 2
    assert "state.json is not valid JSON" in broken.stderr


@pytest.mark.anyio
async def test_the_worker_consolidates_memory_once_a_day(tmp_path: Path) -> None:
    clock = FakeClock(start=datetime(2026, 12, 1, 8, tzinfo=UTC))
    memory = Memory(tmp_path / "home", clock=clock)
    memory.remember("Backups run at 02:00.", run_id="run-1")
    clock.advance(timedelta(days=1))
    worker = Worker(Tether(store=InMemoryStore(), clock=clock), memory=memory)

    await worker.run(until_idle=True)
    assert "Backups run at 02:00." in (tmp_path / "home" / "MEMORY.md").read_text()

    memory.remember("Today's entry.", run_id="run-2")
    clock.advance(timedelta(hours=1))
    await worker.run(until_idle=True)
    assert not (tmp_path / "home" / "memory" / "archive" / "2026-12-02.md").exists()
    clock.advance(timedelta(days=1))
    await worker.run(until_idle=True)
    assert "Today's entry." in (tmp_path / "home" / "MEMORY.md").read_text()
