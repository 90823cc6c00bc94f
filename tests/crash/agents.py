"""Agents for the crash suite, loaded by workers as ``tests.crash.agents:chaos`` / ``:poison``.

The model is a pure function of the task and the conversation (no state), so a run
resumed in any process gets the same answers. The task is a plan such as ``TNLTN``:
T = transfer (idempotent, keyed), N = notify (at most once), L = log (read: repeatable).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from functools import cache

from tests.crash import ledger
from tether import Agent, RunContext, RunLimits, tool
from tether.messages import AssistantMessage, UserMessage
from tether.testing import FunctionModel, call


@cache
def _db() -> sqlite3.Connection:
    return ledger.connect()


@tool(risk="external", effect="idempotent")
def transfer(ctx: RunContext, amount: int) -> str:
    """Move money; the ledger deduplicates by idempotency key."""
    db = _db()
    ledger.record_attempt(db, "transfer", ctx.run_id, ctx.step, ctx.idempotency_key)
    db.execute(
        "INSERT INTO transfers VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
        (ctx.idempotency_key, ctx.run_id, ctx.step, amount),
    )
    return f"transferred {amount}"


@tool(risk="external", effect="at_most_once")
def notify(ctx: RunContext, text: str) -> str:
    """Send a message; no key, so it must never be sent twice."""
    db = _db()
    ledger.record_attempt(db, "notify", ctx.run_id, ctx.step, ctx.idempotency_key)
    db.execute("INSERT INTO notifications VALUES (?, ?, ?)", (ctx.run_id, ctx.step, text))
    return "sent"


@tool(risk="read")
def log_event(ctx: RunContext, text: str) -> str:
    """Append to a log; repeats are harmless."""
    db = _db()
    ledger.record_attempt(db, "log_event", ctx.run_id, ctx.step, ctx.idempotency_key)
    db.execute("INSERT INTO events_log VALUES (?, ?, ?)", (ctx.run_id, ctx.step, text))
    return "logged"


def _plan_model(messages, tools):  # type: ignore[no-untyped-def]
    plan = next(m.content for m in messages if isinstance(m, UserMessage))
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    if turn >= len(plan):
        return f"plan {plan} done"
    letter = plan[turn]
    if letter == "T":
        return call("transfer", {"amount": turn + 1})
    if letter == "N":
        return call("notify", {"text": f"step {turn}"})
    return call("log_event", {"text": f"step {turn}"})


chaos = Agent(
    name="chaos",
    model=FunctionModel(_plan_model, name="plan"),
    tools=[transfer, notify, log_event],
    limits=RunLimits(max_steps=50, max_repeats=50),
)


@tool(risk="read")
def explode() -> str:
    """Kills the process that runs it, every time."""
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


poison = Agent(
    name="poison",
    model=FunctionModel(lambda messages, tools: call("explode"), name="poison"),
    tools=[explode],
)


@tool(risk="external", effect="idempotent")
def slow_transfer(ctx: RunContext, amount: int) -> str:
    """A keyed transfer that takes a while (long enough to be frozen mid-call)."""
    import time as clock

    db = _db()
    ledger.record_attempt(db, "slow_transfer", ctx.run_id, ctx.step, ctx.idempotency_key)
    clock.sleep(float(os.environ.get("CHAOS_SLOW_S", "2")))
    db.execute(
        "INSERT INTO transfers VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
        (ctx.idempotency_key, ctx.run_id, ctx.step, amount),
    )
    return f"transferred {amount}"


def _one_slow_call(messages, tools):  # type: ignore[no-untyped-def]
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    return call("slow_transfer", {"amount": 7}) if turn == 0 else "paid"


slow = Agent(name="slow", model=FunctionModel(_one_slow_call, name="slow"), tools=[slow_transfer])
