"""What observability costs per step: the tether loop with and without its observers.

Workload: the loop-overhead calculator (4 tool calls and a final answer, 9 steps), in
memory. Three configurations run in the same process, interleaved:

- ``off``: no subscribers;
- ``on``: ``EventLog`` + ``Metrics`` + ``SpanRecorder`` with nothing attached (no
  tracing SDK, the ``tether.events`` logger at its default level, so INFO records are
  not built);
- ``on+json``: the same, with every event written as a JSON log line to a null stream.

The target (issue "Observability") is at most 10 µs per step for ``on`` over ``off``.

Usage: ``python bench/observe_overhead.py [--runs N] [--repeats R] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence

from _workload import STEPS, ReplayModel, add, responses

from tether import Agent, InMemoryStore, RunLimits, RunStatus, Tether
from tether.observe.logs import EventLog, JsonFormatter
from tether.observe.metrics import Metrics
from tether.observe.tracing import SpanRecorder
from tether.run import Subscriber

TARGET_US_PER_STEP = 10.0


async def per_step_us(subscribers: Sequence[Subscriber], runs: int) -> float:
    script = responses()
    runtime = Tether(store=InMemoryStore(), subscribers=subscribers)
    limits = RunLimits(max_steps=20)
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        agent = Agent(name="calc", model=ReplayModel(script), tools=[add], limits=limits)
        result = await runtime.run(agent, "sum")
        assert result.status is RunStatus.COMPLETED and result.steps == STEPS
    return (time.perf_counter() - start) / runs / STEPS * 1e6


def json_logger() -> logging.Logger:
    logger = logging.getLogger("bench.events")
    logger.handlers.clear()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configurations: dict[str, list[Subscriber]] = {
        "off": [],
        "on": [EventLog(), Metrics(), SpanRecorder()],
        "on+json": [EventLog(json_logger()), Metrics(), SpanRecorder()],
    }
    for subscribers in configurations.values():
        asyncio.run(per_step_us(subscribers, 100))  # warm up
    samples: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.repeats):
        for name, subscribers in configurations.items():
            samples[name].append(asyncio.run(per_step_us(subscribers, args.runs)))
    off = statistics.median(samples["off"])
    report = {
        "workload": "4 tool calls + answer (9 steps), in memory",
        "runs_per_sample": args.runs,
        "samples": args.repeats,
        "off_us_per_step": round(off, 2),
        "on_us_per_step": round(statistics.median(samples["on"]), 2),
        "on_json_us_per_step": round(statistics.median(samples["on+json"]), 2),
        "added_us_per_step": round(
            statistics.median(o - f for o, f in zip(samples["on"], samples["off"], strict=True)), 2
        ),
        "added_json_us_per_step": round(
            statistics.median(
                o - f for o, f in zip(samples["on+json"], samples["off"], strict=True)
            ),
            2,
        ),
        "target_added_us_per_step": TARGET_US_PER_STEP,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
