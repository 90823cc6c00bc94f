"""Journal size of runs of 9, 100 and 1,000 steps in the SQLite store.

Workload: the quick-start calculator (``add``) with an in-process model that plays a
script of tool calls and a final answer. A round is one model response with one call
(2 steps); a response with two parallel calls is 3 steps; the answer is 1 step. So

- 9 steps = 4 rounds + answer (the workload of ``bench/durable_step.py``);
- 100 steps = 48 rounds + 1 response with 2 calls + answer;
- 1,000 steps = 498 rounds + 1 response with 2 calls + answer.

Each run goes into its own ``SqliteStore`` file, then the ``events`` rows of the run are
measured three ways: the ``body`` column (bytes of UTF-8), the whole row as stored data
(``body`` + ``kind`` + the key: the integer ``run_key`` and ``seq``, counted as 8 bytes
each, the most SQLite spends on an integer), and SQLite's own figures from
the ``dbstat`` virtual table (payload bytes of the ``events`` b-tree, and the pages it
occupies, which round up to whole 4 KiB pages). Growth is linear when bytes per step stay
roughly constant between 100 and 1,000 steps.

Usage: ``python bench/journal_bytes.py [--dir DIR] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from _workload import ReplayModel

from tether import Agent, ModelResponse, RunLimits, RunStatus, Tether, ToolCall, tool
from tether.store import SqliteStore

TARGET_BYTES_9_STEPS = 2048
REPO = Path(__file__).resolve().parent.parent
TASK = "What is 1 + 2?"
# steps -> (rounds of one call, responses with two parallel calls)
SHAPES = {9: (4, 0), 100: (48, 1), 1000: (498, 1)}
LINEAR_TOLERANCE = 0.10
KEY_BYTES = 16
"""The row key (run_key, seq): two integers, counted at their widest (8 bytes each)."""


def plain_add(a: int, b: int) -> int:
    return a + b


add = tool(name="add", risk="read")(plain_add)


def script(rounds: int, pairs: int) -> list[ModelResponse]:
    """``rounds`` responses with one call, ``pairs`` with two, then the answer."""
    counter = iter(range(10**6))

    def next_call() -> ToolCall:
        i = next(counter)
        arguments = json.dumps({"a": i, "b": i + 1})
        return ToolCall(id=f"call_{i}", name="add", arguments=arguments)

    responses = [ModelResponse(tool_calls=(next_call(),)) for _ in range(rounds)]
    responses += [ModelResponse(tool_calls=(next_call(), next_call())) for _ in range(pairs)]
    return [*responses, ModelResponse(text="The sum is 3.")]


async def journal_one(path: Path, steps: int) -> dict[str, Any]:
    rounds, pairs = SHAPES[steps]
    store = SqliteStore(path, synchronous="NORMAL")  # sizes do not depend on it
    limits = RunLimits(max_steps=steps + 10, max_duration=None)
    agent = Agent(name="calc", model=ReplayModel(script(rounds, pairs)), tools=[add], limits=limits)
    result = await Tether(store=store).run(agent, TASK)
    await store.close()
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.steps == steps, (result.steps, steps)
    return {"run_id": result.run_id, "steps": result.steps, "tool_calls": result.tool_calls}


def measure(path: Path, run_id: str) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # dbstat reads the main file
        (run_key,) = conn.execute("SELECT run_key FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        events, body, row = conn.execute(
            "SELECT count(*), sum(length(CAST(body AS BLOB))),"
            f" sum(length(CAST(body AS BLOB)) + length(CAST(kind AS BLOB)) + {KEY_BYTES})"
            " FROM events WHERE run_key = ?",
            (run_key,),
        ).fetchone()
        kinds = {
            kind: {"events": count, "avg_body_bytes": round(size / count, 1)}
            for kind, count, size in conn.execute(
                "SELECT kind, count(*), sum(length(CAST(body AS BLOB))) FROM events"
                " WHERE run_key = ? GROUP BY kind ORDER BY min(seq)",
                (run_key,),
            )
        }
        payload, pages = conn.execute(
            "SELECT sum(payload), sum(pgsize) FROM dbstat WHERE name = 'events'"
        ).fetchone()
    finally:
        conn.close()
    return {
        "events": events,
        "body_bytes": body,
        "row_bytes": row,
        "dbstat_payload_bytes": payload,
        "dbstat_page_bytes": pages,
        "kinds": kinds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=REPO.parent,
        help="where the temporary databases go (default: the repository's parent directory)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=args.dir) as tmp:
        for steps in SHAPES:
            path = Path(tmp) / f"journal-{steps}.db"
            run = asyncio.run(journal_one(path, steps))
            figures = measure(path, run.pop("run_id"))
            for key in ("body_bytes", "row_bytes", "dbstat_payload_bytes"):
                figures[key.replace("_bytes", "_bytes_per_step")] = round(figures[key] / steps, 1)
            runs[str(steps)] = {**run, **figures}
    small, mid, large = (runs[str(n)] for n in SHAPES)
    marginal = (large["row_bytes"] - mid["row_bytes"]) / (large["steps"] - mid["steps"])
    drift = large["row_bytes_per_step"] / mid["row_bytes_per_step"] - 1
    report: dict[str, Any] = {
        "workload": "add tool calls + answer, in-process model, one SqliteStore file per run",
        "runs": runs,
        "marginal_row_bytes_per_step_100_to_1000": round(marginal, 1),
        "per_step_drift_100_to_1000": round(drift, 3),
        "linear": abs(drift) <= LINEAR_TOLERANCE,
        "target_bytes_9_steps": TARGET_BYTES_9_STEPS,
        "target_met_body": small["body_bytes"] <= TARGET_BYTES_9_STEPS,
        "target_met_rows": small["row_bytes"] <= TARGET_BYTES_9_STEPS,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report))
        return 0
    header = ("steps", "events", "body B", "row B", "dbstat payload B", "pages B", "row B/step")
    print(
        f"{header[0]:>6} {header[1]:>7} {header[2]:>9} {header[3]:>9} {header[4]:>17}"
        f" {header[5]:>9} {header[6]:>11}"
    )
    for figures in runs.values():
        print(
            f"{figures['steps']:>6} {figures['events']:>7} {figures['body_bytes']:>9}"
            f" {figures['row_bytes']:>9} {figures['dbstat_payload_bytes']:>17}"
            f" {figures['dbstat_page_bytes']:>9} {figures['row_bytes_per_step']:>11}"
        )
    print("9-step run by kind:")
    for kind, figures in small["kinds"].items():
        print(f"{kind:>30}: {figures}")
    for key, value in report.items():
        if key not in ("runs", "workload"):
            print(f"{key:>40}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
