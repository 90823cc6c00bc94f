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


def _demo(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("TETHER_STORE", "NO_COLOR")}
    environment["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "tether", "demo", *args],
        cwd=tmp_path,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _audit(tmp_path: Path, run_id: str) -> list[dict[str, object]]:
    exported = subprocess.run(
        [sys.executable, "-m", "tether", "audit", "export", "--jsonl"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TETHER_STORE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    return [r for r in rows if r.get("run_id") == run_id]


def _run_id(out: str) -> str:
    return next(w for w in out.split() if w.startswith("run_"))


def test_tether_demo_yes_approves_the_deletion_and_ends_typed(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "limits " in out and "budget " in out and "$0.05 per run" in out
    assert "waits for a person" in out and "approved (--yes)" in out
    statuses = [s.value for s in RunStatus if s.is_terminal]
    assert any(f"{status} · " in out for status in statuses), out
    assert " tokens · $0" in out and "journal: .tether/tether.db" in out
    assert "tether show run_" in out and "tether undo run_" in out
    run_id = _run_id(out)
    workspace = tmp_path / ".tether" / "demo-workspace"
    assert not (workspace / "old.log").exists(), "the approved deletion ran"
    assert (workspace / "notes.txt").exists(), "nothing else was touched"
    actions = [row["action"] for row in _audit(tmp_path, run_id)]
    assert actions[:3] == ["approval_requested", "approved", "privileged_call"], actions

    undone = subprocess.run(
        [sys.executable, "-m", "tether", "undo", run_id],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TETHER_STORE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert (workspace / "old.log").exists(), "tether undo brings the file back from the trash"


def test_tether_demo_without_a_terminal_denies_and_deletes_nothing(tmp_path: Path) -> None:
    done = _demo(tmp_path, stdin="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no terminal to ask, denied" in done.stdout
    assert (tmp_path / ".tether" / "demo-workspace" / "old.log").exists()
    run_id = _run_id(done.stdout)
    actions = [row["action"] for row in _audit(tmp_path, run_id)]
    assert "denied" in actions and "privileged_call" not in actions, actions
