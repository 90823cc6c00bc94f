"""Per-step overhead of the tether loop against a raw hand-written loop, in memory.

Workload: the quick-start calculator made into 4 tool calls and a final answer
(5 model responses + 4 tool calls = 9 steps). Both loops use the same in-process model
(pre-built responses, no I/O) and the same ``add`` function, in the same process, so the
difference is what tether adds: validation, limits, loop detection, events, journal.

Usage: ``python bench/loop_overhead.py [--runs N] [--repeats R] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time

from _workload import STEPS, ReplayModel, add, raw_loop, responses

from tether import Agent, InMemoryStore, RunLimits, RunStatus, Tether

TARGET_US_PER_STEP = 20.0


async def measure(runs: int) -> tuple[float, float]:
    script = responses()
    runtime = Tether(store=InMemoryStore())
    limits = RunLimits(max_steps=20)
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        await raw_loop(ReplayModel(script), "sum")
    raw = time.perf_counter() - start
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        agent = Agent(name="calc", model=ReplayModel(script), tools=[add], limits=limits)
        result = await runtime.run(agent, "sum")
        assert result.status is RunStatus.COMPLETED and result.steps == STEPS
        assert not any(getattr(m, "is_error", False) for m in result.messages)
    tether_s = time.perf_counter() - start
    return raw / runs / STEPS * 1e6, tether_s / runs / STEPS * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(measure(200))  # warm up imports, caches and the allocator
    samples = [asyncio.run(measure(args.runs)) for _ in range(args.repeats)]
    raw = statistics.median(s[0] for s in samples)
    ours = statistics.median(s[1] for s in samples)
    overhead = statistics.median(s[1] - s[0] for s in samples)
    report = {
        "workload": "4 tool calls + answer (9 steps), in memory",
        "runs_per_sample": args.runs,
        "samples": args.repeats,
        "raw_us_per_step": round(raw, 2),
        "tether_us_per_step": round(ours, 2),
        "overhead_us_per_step": round(overhead, 2),
        "ratio": round(ours / raw, 2),
        "target_overhead_us_per_step": TARGET_US_PER_STEP,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
