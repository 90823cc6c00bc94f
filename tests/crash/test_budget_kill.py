"""Workers killed inside the budget reservation window leak no reservation and pay once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.crash.budget_agent import COST, RESPONSES, runtime
from tether import RunStatus
from tether.events import ModelResponded

ROOT = Path(__file__).resolve().parents[2]
RUNS = 12


def module(*args: str, failpoints: str = "", seed: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_FAILPOINTS")}
    if failpoints:
        env |= {"TETHER_FAILPOINTS": failpoints, "TETHER_FAILPOINTS_SEED": str(seed)}
    return subprocess.run(
        [sys.executable, "-m", "tests.crash.budget_agent", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kills_inside_reservations_leak_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.db")
    assert module("submit", path, str(RUNS)).returncode == 0
    chance = random.Random(11)
    kills = 0
    deadline = time.monotonic() + 180
    while asyncio.run(_unfinished(path)):
        assert time.monotonic() < deadline, "the runs never finished"
        done = module(
            "work", path, failpoints="after_budget_reserve:0.15", seed=chance.randrange(1 << 30)
        )
        assert done.returncode in (0, -signal.SIGKILL), done.stderr
        kills += done.returncode == -signal.SIGKILL
        if done.returncode == 0:
            time.sleep(0.3)  # leases of killed workers are lapsing
    assert kills >= 3, f"only {kills} kills: the trial did not test the window"
    asyncio.run(_check(path))


async def _unfinished(path: str) -> int:
    tether = runtime(path)
    try:
        runs = await tether.store.list_runs()
        return sum(r.finished_at is None for r in runs)
    finally:
        await tether.close()


async def _check(path: str) -> None:
    tether = runtime(path)
    try:
        runs = await tether.store.list_runs()
        assert len(runs) == RUNS
        assert {r.status for r in runs} == {RunStatus.COMPLETED}
        for run in runs:
            steps = [
                e.step
                for e in await tether.store.events(run.run_id)
                if isinstance(e, ModelResponded)
            ]
            assert steps == list(range(1, 2 * RESPONSES, 2)), steps  # each response once
        assert tether.budgets is not None
        (window,) = await tether.budgets.book.usage()
        assert window.reserved_usd == 0, "a killed worker's reservation leaked"
        assert window.spent_usd == COST * RESPONSES * RUNS, "each response paid exactly once"
        assert tether.store.query("SELECT count(*) FROM budget_reservations") == [(0,)]
    finally:
        await tether.close()
