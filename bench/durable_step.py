"""Durable step cost on SQLite (synchronous FULL and NORMAL) against a raw durable loop.

Workload: the quick-start calculator made into 4 tool calls and a final answer
(5 model responses + 4 tool calls = 9 steps), the same in-process model as
``bench/loop_overhead.py`` (pre-built responses, no I/O). tether runs it through
``Tether(store=SqliteStore(file, synchronous=...))``. The baseline is a hand-written loop
doing the same model and tool work that makes every step durable the cheapest honest
way: ONE row per step in a SQLite table (WAL, the same ``synchronous``), one committed
transaction per step. Both databases live in a temporary directory on the repository's
file system (by default in the repository's parent directory), in the same process.

Each run is timed on its own; a sample's figure is the median run time / 9; the report
gives the median over samples.

Usage: ``python bench/durable_step.py [--runs N] [--repeats R] [--modes FULL,NORMAL]
[--dir DIR] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from _workload import STEPS, ReplayModel, add, raw_loop, responses

from tether import Agent, RunLimits, RunStatus, Tether
from tether.store import SqliteStore

TARGET_US_PER_STEP_FULL = 250.0
REPO = Path(__file__).resolve().parent.parent

Synchronous = Literal["FULL", "NORMAL"]


class RawJournal:
    """One SQLite table, one row and one committed transaction per step."""

    def __init__(self, path: Path, synchronous: Synchronous) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS steps (run_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " body TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
        )

    def write(self, run_id: str, seq: int, body: str) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (run_id, seq, body))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


async def sample(
    directory: Path, synchronous: Synchronous, runs: int, index: int
) -> tuple[list[float], list[float]]:
    """Time ``runs`` raw runs and ``runs`` tether runs, interleaved; seconds per run."""
    script = responses()
    raw_db = RawJournal(directory / f"raw-{synchronous}-{index}.db", synchronous)
    store = SqliteStore(directory / f"tether-{synchronous}-{index}.db", synchronous=synchronous)
    runtime = Tether(store=store)
    limits = RunLimits(max_steps=20)
    raw_times: list[float] = []
    tether_times: list[float] = []
    clock = time.perf_counter
    gc.collect()
    try:
        for i in range(runs):
            start = clock()
            await raw_loop(ReplayModel(script), "sum", functools.partial(raw_db.write, f"run-{i}"))
            raw_times.append(clock() - start)
            agent = Agent(name="calc", model=ReplayModel(script), tools=[add], limits=limits)
            start = clock()
            result = await runtime.run(agent, "sum")
            tether_times.append(clock() - start)
            assert result.status is RunStatus.COMPLETED and result.steps == STEPS
    finally:
        raw_db.close()
        await store.close()
    return raw_times, tether_times


def measure(directory: Path, synchronous: Synchronous, runs: int, repeats: int) -> dict[str, Any]:
    asyncio.run(sample(directory, synchronous, min(runs, 30), -1))  # warm up
    raw_medians: list[float] = []
    tether_medians: list[float] = []
    ratios: list[float] = []
    for index in range(repeats):
        raw, ours = asyncio.run(sample(directory, synchronous, runs, index))
        raw_us = statistics.median(raw) / STEPS * 1e6
        ours_us = statistics.median(ours) / STEPS * 1e6
        raw_medians.append(raw_us)
        tether_medians.append(ours_us)
        ratios.append(ours_us / raw_us)
    raw_us = statistics.median(raw_medians)
    ours_us = statistics.median(tether_medians)
    return {
        "raw_us_per_step": round(raw_us, 1),
        "tether_us_per_step": round(ours_us, 1),
        "overhead_us_per_step": round(ours_us - raw_us, 1),
        "ratio": round(statistics.median(ratios), 2),
        "tether_us_per_step_samples": [round(x, 1) for x in tether_medians],
        "raw_us_per_step_samples": [round(x, 1) for x in raw_medians],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per sample (each loop)")
    parser.add_argument("--repeats", type=int, default=3, help="samples per mode")
    parser.add_argument("--modes", default="FULL,NORMAL", help="synchronous settings to run")
    parser.add_argument(
        "--dir",
        type=Path,
        default=REPO.parent,
        help="where the temporary databases go (default: the repository's parent directory)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes: list[Synchronous] = []
    for mode in args.modes.upper().split(","):
        if mode not in ("FULL", "NORMAL"):
            parser.error(f"unknown mode {mode!r}")
        modes.append(mode)  # type: ignore[arg-type]
    report: dict[str, Any] = {
        "workload": "4 tool calls + answer (9 steps), SqliteStore in WAL mode",
        "runs_per_sample": args.runs,
        "samples": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=args.dir) as tmp:
        for mode in modes:
            report[mode] = measure(Path(tmp), mode, args.runs, args.repeats)
    if "FULL" in report:
        report["target_us_per_step_full"] = TARGET_US_PER_STEP_FULL
        report["target_met"] = report["FULL"]["tether_us_per_step"] <= TARGET_US_PER_STEP_FULL
    report["sqlite"] = sqlite3.sqlite_version
    report["python"] = sys.version.split()[0]
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for name, figure in value.items():
                    print(f"{name:>30}: {figure}")
            else:
                print(f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
