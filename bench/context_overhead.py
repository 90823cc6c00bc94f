"""What a bounded context costs per step, and what it saves in tokens sent.

Workload: a 200-call run (each call with ~100 bytes of arguments and a ~250-byte result,
then a final answer: 401 steps), in memory, with a model that returns pre-built
responses. Two configurations run in the same process, interleaved:

- ``whole``: no ``ContextPolicy``; every request carries the whole conversation (the
  loop passes its list, so this costs nothing per step);
- ``bounded``: ``ContextPolicy(max_tokens=3000, keep_turns=4)`` with the deterministic
  summariser: each step builds the view and counts it; compactions fold turns.

Reported: µs per step for each and the difference, and (from one untimed run of each)
the input tokens sent over the whole run and the largest request, by
``estimate_tokens``.

Usage: ``python bench/context_overhead.py [--runs N] [--repeats R] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence

from tether import Agent, InMemoryStore, ModelResponse, RunLimits, RunStatus, Tether, ToolCall, tool
from tether.context import ContextPolicy
from tether.messages import Message, ToolDefinition, estimate_tokens
from tether.models import ModelSettings

CALLS = 200
STEPS = 2 * CALLS + 1
POLICY = ContextPolicy(max_tokens=3000, keep_turns=4)


@tool(name="lookup", risk="read")
def lookup(key: str, note: str) -> str:
    """Look a key up."""
    return f"{key}: " + "value " * 40


def responses() -> list[ModelResponse]:
    calls = [
        ToolCall(
            id=f"c{i}", name="lookup", arguments=json.dumps({"key": f"k{i}", "note": "n" * 70})
        )
        for i in range(CALLS)
    ]
    return [ModelResponse(tool_calls=(c,)) for c in calls] + [ModelResponse(text="done")]


class Model:
    """Pre-built responses in order; optionally measures what each request carries."""

    name = "replay"

    def __init__(self, script: Sequence[ModelResponse], *, measure: bool = False) -> None:
        self.script = script
        self.index = 0
        self.measure = measure
        self.sizes: list[int] = []

    async def request(
        self, messages: Sequence[Message], tools: Sequence[ToolDefinition], settings: ModelSettings
    ) -> ModelResponse:
        if self.measure:
            self.sizes.append(estimate_tokens(messages, tools))
        response = self.script[self.index]
        self.index += 1
        return response


def agent(model: Model, policy: ContextPolicy | None) -> Agent[str]:
    limits = RunLimits(max_steps=STEPS + 5, max_duration=None)
    return Agent(name="ctx", model=model, tools=[lookup], limits=limits, context=policy)


async def per_step_us(policy: ContextPolicy | None, runs: int) -> float:
    script = responses()
    runtime = Tether(store=InMemoryStore())
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        result = await runtime.run(agent(Model(script), policy), "look up every key")
        assert result.status is RunStatus.COMPLETED and result.steps == STEPS
    return (time.perf_counter() - start) / runs / STEPS * 1e6


async def tokens_sent(policy: ContextPolicy | None) -> tuple[int, int]:
    model = Model(responses(), measure=True)
    await Tether(store=InMemoryStore()).run(agent(model, policy), "look up every key")
    return sum(model.sizes), max(model.sizes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configurations: dict[str, ContextPolicy | None] = {"whole": None, "bounded": POLICY}
    for policy in configurations.values():
        asyncio.run(per_step_us(policy, 2))  # warm up
    samples: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.repeats):
        for name, policy in configurations.items():
            samples[name].append(asyncio.run(per_step_us(policy, args.runs)))
    whole_total, whole_max = asyncio.run(tokens_sent(None))
    bounded_total, bounded_max = asyncio.run(tokens_sent(POLICY))
    report = {
        "workload": f"{CALLS} tool calls + answer ({STEPS} steps), in memory",
        "runs_per_sample": args.runs,
        "samples": args.repeats,
        "whole_us_per_step": round(statistics.median(samples["whole"]), 2),
        "bounded_us_per_step": round(statistics.median(samples["bounded"]), 2),
        "added_us_per_step": round(
            statistics.median(
                b - w for b, w in zip(samples["bounded"], samples["whole"], strict=True)
            ),
            2,
        ),
        "whole_tokens_sent": whole_total,
        "bounded_tokens_sent": bounded_total,
        "tokens_sent_ratio": round(bounded_total / whole_total, 3),
        "whole_largest_request": whole_max,
        "bounded_largest_request": bounded_max,
        "budget_tokens": POLICY.max_tokens,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
