"""A frozen worker (SIGSTOP) loses its run to a second worker and can never write again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.crash import ledger
from tether import RunStatus, Tether
from tether.events import ModelResponded, ToolCallFinished, ToolCallStarted
from tether.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def worker(store_url: str, ledger_path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHAOS_LEDGER": str(ledger_path),
        "TETHER_STORE": store_url,
        "CHAOS_SLOW_S": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tether", "worker", "--poll", "0.05", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_stopped_worker_never_double_runs_a_step(tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.db"
    db = ledger.connect(ledger_path)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    store = SqliteStore(tmp_path / "journal.db")
    run_id = asyncio.run(Tether(store=store).submit("tests.crash.agents:slow", "pay"))

    first = worker(store_url, ledger_path, "--lease", "1")
    try:
        wait_for(lambda: db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 1)
        first.send_signal(signal.SIGSTOP)  # frozen inside the tool call, holding the lease
        time.sleep(1.5)  # its lease lapses; it cannot renew while stopped

        second = worker(store_url, ledger_path, "--lease", "5", "--until-idle")
        _, second_err = second.communicate(timeout=30)
        assert second.returncode == 0, second_err.decode()
        journal_after_second = asyncio.run(store.events(run_id))
        record = asyncio.run(store.get_run(run_id))
        assert record is not None and record.status is RunStatus.COMPLETED

        first.send_signal(signal.SIGCONT)  # it finishes its call and tries to record it
        time.sleep(2.5)
        assert asyncio.run(store.events(run_id)) == journal_after_second, "fenced: no write"
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=30)

    assert b"lost the lease" in stderr
    steps = [
        e.step for e in journal_after_second if isinstance(e, ModelResponded | ToolCallFinished)
    ]
    assert steps == [1, 2, 3], "every step recorded exactly once"
    assert sum(isinstance(e, ToolCallStarted) for e in journal_after_second) == 1
    attempts = db.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert attempts == 2, "both workers entered the idempotent call"
    transfers = sqlite3.connect(ledger_path).execute("SELECT count(*) FROM transfers")
    assert transfers.fetchone()[0] == 1, "the keyed effect happened once"
