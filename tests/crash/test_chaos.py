"""The crash suite: workers are killed (failpoints and random SIGKILLs) over many runs.

A supervisor submits scripted runs, keeps worker processes alive (restarting each one
that dies), kills them at random, resolves runs that end in ``needs_review``, and when
every run has finished checks the invariants against the journal and the external
ledger (:mod:`tests.crash.ledger`), which no one kills.

``CHAOS_RUNS`` sets the number of runs (default 100); ``make chaos N=1000`` runs the big
tier by hand.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash import agents, ledger
from tether import Agent, RunStatus, Tether
from tether.errors import RunStateError
from tether.events import (
    ModelResponded,
    RunFinished,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.store import SqliteStore
from tether.testing import FaultPlan, FunctionModel

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("CHAOS_RUNS", "100"))
WORKERS = 2
DEADLINE_S = max(240, RUNS * 3 // 10)
FAILPOINTS = ",".join(
    [
        "before_intent:0.01",
        "after_intent_before_call:0.02",
        "after_call_before_result:0.03",
        "after_result_before_next:0.01",
        "before_terminal_write:0.02",
        "during_lease_renew:0.05",
    ]
)


def plan(rng: random.Random) -> str:
    return "".join(rng.choice("TNL") for _ in range(rng.randint(2, 6)))


class Supervisor:
    def __init__(self, tmp: Path, rng: random.Random) -> None:
        self.store_url = f"sqlite:///{tmp / 'journal.db'}"
        self.ledger = tmp / "ledger.db"
        self.rng = rng
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills = Counter[str]()
        self.spawned = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        self.spawned += 1
        env = {
            **os.environ,
            "CHAOS_LEDGER": str(self.ledger),
            "TETHER_FAILPOINTS": FAILPOINTS,
            "TETHER_FAILPOINTS_SEED": str(self.rng.random()),
            "TETHER_STORE": self.store_url,
        }
        command = [
            sys.executable, "-m", "tether", "worker",
            "--concurrency", "4", "--lease", "1", "--poll", "0.05",
        ]  # fmt: skip
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def tend(self) -> None:
        """Restart dead workers; count how they died."""
        alive = []
        for worker in self.workers:
            code = worker.poll()
            if code is None:
                alive.append(worker)
            elif code == -signal.SIGKILL:
                self.kills["failpoint_or_poison"] += 1
            else:
                raise AssertionError(f"a worker exited with {code}")
        self.workers = alive
        while len(self.workers) < WORKERS:
            self.workers.append(self.spawn())

    def kill_one(self) -> None:
        victim = self.rng.choice(self.workers)
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.kills["random"] += 1
            self.workers.remove(victim)

    def stop(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


def raising_agent(name: str) -> Agent:
    """The same tools, each set to raise; the model raises too. Replay must use neither."""
    source = agents.chaos if name == "chaos" else agents.poison
    plan_ = FaultPlan()
    for t in source.tools:
        plan_.raise_on(t.name, RuntimeError("replay must not call tools"))

    def no_model(messages, tools):  # type: ignore[no-untyped-def]
        raise RuntimeError("replay must not call the model")

    return Agent(
        name=source.name,
        model=FunctionModel(no_model),
        tools=plan_.apply(list(source.tools)),
        limits=source.limits,
    ), plan_


@pytest.mark.timeout(DEADLINE_S + 60)
def test_no_run_lost_no_effect_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261124")))
    supervisor = Supervisor(tmp_path, rng)
    monkeypatch.setenv("CHAOS_LEDGER", str(supervisor.ledger))
    ledger.connect(supervisor.ledger).close()
    store = SqliteStore(tmp_path / "journal.db")
    runtime = Tether(store=store)
    plans: dict[str, str] = {}

    async def submit_all() -> str:
        for _ in range(RUNS):
            task = plan(rng)
            plans[await runtime.submit("tests.crash.agents:chaos", task)] = task
        return await runtime.submit("tests.crash.agents:poison", "boom")

    poison_id = asyncio.run(submit_all())
    reviews = 0
    started = time.monotonic()
    try:
        while True:
            supervisor.tend()
            time.sleep(rng.uniform(0.15, 0.4))
            if rng.random() < 0.45:
                supervisor.kill_one()
            reviews += asyncio.run(resolve_reviews(runtime, rng))
            if asyncio.run(all_finished(store)):
                break
            assert time.monotonic() - started < DEADLINE_S, asyncio.run(progress(store))
    finally:
        supervisor.stop()

    kills = sum(supervisor.kills.values())
    print(f"\nchaos: {RUNS} runs, {kills} kills {dict(supervisor.kills)}, {reviews} reviews, "
          f"{supervisor.spawned} workers, {time.monotonic() - started:.1f} s")  # fmt: skip
    asyncio.run(check_invariants(store, supervisor.ledger, plans, poison_id))
    assert kills >= 30, f"only {kills} kills; the suite must kill at least 30 times"


async def resolve_reviews(runtime: Tether, rng: random.Random) -> int:
    """A person looks at each run in needs_review: skip the call, or record that it worked."""
    count = 0
    for record in await runtime.store.list_runs(status=RunStatus.NEEDS_REVIEW):
        try:
            if rng.random() < 0.5:
                await runtime.review(record.run_id, "skip", reviewer="supervisor")
            else:
                await runtime.review(
                    record.run_id, "result", result='"sent"', reviewer="supervisor"
                )
        except RunStateError:
            continue  # a worker still holds it, or is just writing its pause
        count += 1
    return count


async def all_finished(store: SqliteStore) -> bool:
    return all(r.finished_at is not None for r in await store.list_runs())


async def progress(store: SqliteStore) -> str:
    lines = [str(Counter(r.status.value for r in await store.list_runs()))]
    for r in await store.list_runs():
        if r.finished_at is None:
            tail = [e.kind for e in (await store.events(r.run_id))[-4:]]
            lines.append(
                f"{r.run_id} {r.status.value} attempts={r.attempts} owner={r.lease_owner} "
                f"until={r.lease_expires_at} tail={tail}"
            )
    return "\n".join(lines)


async def check_invariants(
    store: SqliteStore, ledger_path: Path, plans: dict[str, str], poison_id: str
) -> None:
    records = {r.run_id for r in await store.list_runs()}
    assert records == set(plans) | {poison_id}, "0 lost runs"
    oracle = Oracle(store, sqlite3.connect(ledger_path), poison_id)
    for run_id in records:
        await oracle.check_run(run_id)
    assert set(oracle.transfers) <= oracle.intended_keys, "no transfer without an intent"
    await oracle.check_entered_notifications()
    integrity = sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"
    print(f"chaos: {oracle.in_doubt} calls in doubt, {oracle.crash_looped} collateral crash loops")
    assert oracle.crash_looped <= len(plans) * 15 // 100, "most runs must complete"


class Oracle:
    """Reads the journal and the ledger; asserts the invariants run by run."""

    def __init__(self, store: SqliteStore, db: sqlite3.Connection, poison_id: str) -> None:
        self.store = store
        self.poison_id = poison_id
        self.attempts = Counter(
            (tool, run, step)
            for tool, run, step in db.execute("SELECT tool, run_id, step FROM attempts")
        )
        self.transfers = Counter(key for (key,) in db.execute("SELECT key FROM transfers"))
        self.notifications = Counter(
            (run, step) for run, step in db.execute("SELECT run_id, step FROM notifications")
        )
        self.intended_keys: set[str] = set()
        self.in_doubt = 0
        self.crash_looped = 0

    async def check_run(self, run_id: str) -> None:
        journal = await self.store.events(run_id)
        finished = [e for e in journal if isinstance(e, RunFinished)]
        assert len(finished) == 1 and journal[-1] is finished[0], f"{run_id}: one terminal, last"
        steps = sorted(e.step for e in journal if isinstance(e, ModelResponded | ToolCallFinished))
        assert steps == list(range(1, len(steps) + 1)), f"{run_id}: steps contiguous"
        started = {e.step: e for e in journal if isinstance(e, ToolCallStarted)}
        results = {e.step for e in journal if isinstance(e, ToolCallFinished)}
        assert set(started) <= results, f"{run_id}: 0 orphaned tool calls"
        doubted = {e.step for e in journal if isinstance(e, ToolCallInDoubt)}
        self.in_doubt += len(doubted)
        assert all(started[step].tool == "notify" for step in doubted), "only at-most-once"
        abandoned = finished[0].error_class == "crash_loop"
        for intent in started.values():
            self._check_effect(intent, doubted, abandoned)
        await self._check_ending(run_id, finished[0])

    def _check_effect(self, intent: ToolCallStarted, doubted: set[int], abandoned: bool) -> None:
        run_id, step = intent.run_id, intent.step
        if intent.tool == "transfer":
            self.intended_keys.add(intent.idempotency_key)
            done = self.transfers[intent.idempotency_key]
            # Completed runs: exactly once. Abandoned (crash_loop): perhaps not, never twice.
            assert done == 1 if not abandoned else done <= 1, "idempotent: exactly once"
        if intent.tool == "notify":
            entered = self.attempts[("notify", run_id, step)]
            assert entered <= 1, "at most once: never re-entered"
            assert self.notifications[(run_id, step)] <= 1
            if entered == 0 and not abandoned:
                assert step in doubted, f"{run_id} step {step}: killed before the call"

    async def _check_ending(self, run_id: str, finished: RunFinished) -> None:
        if run_id == self.poison_id or finished.status is RunStatus.FAILED:
            # Runs that shared a worker with the poison run die with it; four deaths in a
            # row end a run crash_loop, which is the guard working, not a lost run.
            assert finished.status is RunStatus.FAILED
            assert finished.error_class == "crash_loop"
            self.crash_looped += run_id != self.poison_id
            return
        assert finished.status is RunStatus.COMPLETED, (run_id, finished)
        agent, faults = raising_agent("chaos")
        replayed = await Tether(store=self.store).replay(run_id, agent=agent)
        assert replayed.status is RunStatus.COMPLETED
        assert replayed.output == finished.output
        assert sum(faults.invocations(t.name) for t in agent.tools) == 0

    async def check_entered_notifications(self) -> None:
        """Every at-most-once call entered without a clean result was put in doubt."""
        for (tool, run_id, step), count in self.attempts.items():
            if tool != "notify":
                continue
            journal = await self.store.events(run_id)
            call = next(e for e in journal if isinstance(e, ToolCallFinished) and e.step == step)
            doubted = any(isinstance(e, ToolCallInDoubt) and e.step == step for e in journal)
            assert count == 1
            if call.error_class == "crash_loop":
                continue  # abandoned with its outcome marked unknown
            if call.content != "sent":
                assert doubted, f"{run_id} step {step}: a kill in the window must need review"
