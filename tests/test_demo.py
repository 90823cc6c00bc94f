"""The README's main command: a real agent on the local model, journaled in SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether.cli.common import EXIT_CODES
from tether.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.local_model


def test_the_weather_demo_ends_in_a_typed_status_and_says_what_was_caught(
    tmp_path: Path,
) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    command = [sys.executable, "-m", "tether", "run"]
    task = "What is the weather in Paris?"
    done = subprocess.run(
        [*command, str(ROOT / "examples/weather.py") + ":agent", task],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    codes = {code: status for status, code in EXIT_CODES.items()}
    assert done.returncode in codes, done.stderr
    status = codes[done.returncode]
    assert status.is_terminal, status
    out = done.stdout
    assert f"{status.value} · " in out and " tokens · $0" in out, "the local model costs 0"
    assert "journal: .tether/tether.db" in out and "next: tether show run_" in out
    assert "get_forecast" in out, "the timeline shows the calls as they happen"
    if status is not RunStatus.COMPLETED:
        assert "tether caught: " in out, "a misbehaving model is reported, not hidden"

    database = tmp_path / ".tether" / "tether.db"
    assert database.is_file(), "the embedded default store is SQLite in ./.tether"
    shown = subprocess.run(
        [sys.executable, "-m", "tether", "runs", "--json"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (run,) = json.loads(shown.stdout)
    assert run["status"] == status.value and run["agent"] == "weather"
