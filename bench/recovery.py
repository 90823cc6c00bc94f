"""Recovery: 10,000 interrupted runs picked up and driven to completion by one worker.

Set-up (not timed): a ``SqliteStore`` in a temporary directory on the repository's file
system gets 10,000 submitted runs of ``bench._recovery_agent:agent`` (one ``lookup``
call, then an answer: 3 steps). Every run is then claimed by id by a dead owner with a
lease that has already expired, so it looks like a run whose worker died; a fraction of
them (``--partial``, default 10 %) is first driven partway by that owner, which "dies"
after the tool ran and before its result was journaled (the journal holds the model
response and the call's intent, so recovery replays the response and runs the ``read``
tool again). The set-up writes with ``synchronous=NORMAL`` to save time; the store is
then reopened with the setting under test.

Timed: ``Worker(Tether(store=...), concurrency=N, poll_interval=0.01).run(until_idle=True)``
from start to return; then every run must be ``completed``. Wall seconds per
(synchronous, concurrency) pair; the target is 10 s. Also reported: the store's write
transactions (with group commit, one per batch) and the price of one bare commit on the
same disk just before and just after the timed part (a shared disk's fsync can change
several-fold within minutes).

Usage: ``python bench/recovery.py [--runs N] [--modes FULL,NORMAL] [--concurrency 16,64,256]
[--partial F] [--dir DIR] [--profile] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the worker imports bench._recovery_agent by reference
    sys.path.insert(0, str(REPO))

from bench import _recovery_agent  # noqa: E402

from tether import RunStatus, Tether  # noqa: E402
from tether.events import Event, ToolCallFinished  # noqa: E402
from tether.store import Lease, SqliteStore  # noqa: E402
from tether.worker import Worker  # noqa: E402

REFERENCE = "bench._recovery_agent:agent"
TARGET_SECONDS = 10.0
Synchronous = Literal["FULL", "NORMAL"]


class SimulatedCrash(RuntimeError):
    """Raised by the dead owner's store where its process would have died."""


class DiesBeforeResult:
    """A store that fails (like a killed process) when a tool result is about to be saved."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def append(self, events: Sequence[Event], lease: Lease, *, release: bool = False) -> None:
        if any(isinstance(e, ToolCallFinished) for e in events):
            raise SimulatedCrash("the owner died after the call, before its result")
        await self._store.append(events, lease, release=release)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def prepare(path: Path, runs: int, partial: float) -> dict[str, int]:
    """Submit ``runs`` runs and leave them all owned by a dead owner whose lease lapsed."""
    store = SqliteStore(path, synchronous="NORMAL")
    submitter = Tether(store=store)
    ids = [await submitter.submit(REFERENCE, f"task-{i}") for i in range(runs)]
    dead = Tether(store=DiesBeforeResult(store), owner="dead")  # type: ignore[arg-type]
    agent = _recovery_agent.agent
    every = round(1 / partial) if partial > 0 else 0
    driven = 0
    for i, run_id in enumerate(ids):
        lease = await store.claim("dead", lease_for=timedelta(0), run_id=run_id)
        assert lease is not None
        if every and i % every == 0:
            try:
                await dead.drive(lease, agent)
            except SimulatedCrash:
                driven += 1
            else:  # pragma: no cover - the agent always calls its tool
                raise AssertionError("the dead owner finished a run")
    await store.close()
    return {"interrupted": runs, "interrupted_mid_run": driven}


class TransactionCounter:
    """Counts the store's write transactions (a group commit is one), about 0.1 µs each."""

    def __init__(self, store: SqliteStore) -> None:
        self.count = 0
        self._commit = store._commit
        store._commit = self  # type: ignore[method-assign]

    def __call__(self, works: Sequence[Any]) -> Any:
        self.count += 1
        return self._commit(works)


async def recover(
    path: Path, synchronous: Synchronous, concurrency: int, profile: cProfile.Profile | None
) -> tuple[float, Any, int]:
    store = SqliteStore(path, synchronous=synchronous)
    transactions = TransactionCounter(store)
    worker = Worker(
        Tether(store=store, owner="rescuer"), concurrency=concurrency, poll_interval=0.01
    )
    gc.collect()
    if profile is not None:
        profile.enable()
    start = time.perf_counter()
    stats = await worker.run(until_idle=True)
    seconds = time.perf_counter() - start
    if profile is not None:
        profile.disable()
    await store.close()
    return seconds, stats, transactions.count


def commit_cost_us(directory: Path, synchronous: Synchronous, commits: int = 300) -> float:
    """The disk's price of one committed one-row transaction (WAL, same ``synchronous``)."""
    path = directory / f"commit-{synchronous}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        start = time.perf_counter()
        for _ in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200,))
            conn.execute("COMMIT")
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    return seconds / commits * 1e6


def check_completed(path: Path, runs: int) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        counts = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    assert counts == {RunStatus.COMPLETED.value: runs}, counts
    return {"events": events}


def one(
    directory: Path,
    synchronous: Synchronous,
    concurrency: int,
    args: argparse.Namespace,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    path = directory / f"recovery-{synchronous}-{concurrency}.db"
    prepared = asyncio.run(prepare(path, args.runs, args.partial))
    commit_us = commit_cost_us(directory, synchronous)
    executed_before = _recovery_agent.executions[0]
    seconds, stats, transactions = asyncio.run(recover(path, synchronous, concurrency, profile))
    commit_after_us = commit_cost_us(directory, synchronous)
    executed = _recovery_agent.executions[0] - executed_before
    checked = check_completed(path, args.runs)
    assert stats.claimed == args.runs and stats.finished == args.runs, stats
    assert executed == args.runs, executed
    for name in (path.name, f"commit-{synchronous}.db"):
        for suffix in ("", "-wal", "-shm"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
    return {
        "synchronous": synchronous,
        "concurrency": concurrency,
        **prepared,
        "seconds": round(seconds, 2),
        "runs_per_second": round(args.runs / seconds),
        "ms_per_run": round(seconds / args.runs * 1e3, 3),
        "tool_executions": executed,
        "journal_events": checked["events"],
        "target_met": seconds <= TARGET_SECONDS,
        "write_transactions": transactions,
        "disk_commit_us": round(commit_us, 1),
        "disk_commit_us_after": round(commit_after_us, 1),
    }


def parse_modes(text: str) -> list[Synchronous]:
    modes: list[Synchronous] = []
    for mode in text.upper().split(","):
        if mode == "FULL":
            modes.append("FULL")
        elif mode == "NORMAL":
            modes.append("NORMAL")
        else:
            raise argparse.ArgumentTypeError(f"unknown mode {mode!r}")
    return modes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--modes", type=parse_modes, default=["FULL", "NORMAL"])
    parser.add_argument(
        "--concurrency", default="64", help="comma-separated worker concurrencies to try"
    )
    parser.add_argument(
        "--partial", type=float, default=0.1, help="fraction of runs first driven partway"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=REPO.parent,
        help="where the temporary database goes (default: the repository's parent directory)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the timed part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    profile = cProfile.Profile() if args.profile else None
    results = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=args.dir) as tmp:
        for mode in args.modes:
            results.extend(one(Path(tmp), mode, c, args, profile) for c in concurrencies)
    report: dict[str, Any] = {
        "workload": f"{args.runs} interrupted runs (1 tool call + answer), one worker",
        "target_seconds": TARGET_SECONDS,
        "results": results,
        "python": sys.version.split()[0],
    }
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
        report["profile_top_tottime"] = out.getvalue()
    if args.json:
        print(json.dumps(report))
        return 0
    print(report["workload"])
    for result in results:
        print(
            f"  synchronous={result['synchronous']:<6} concurrency={result['concurrency']:<4}"
            f" {result['seconds']:>7.2f} s  {result['runs_per_second']:>6} runs/s"
            f"  ({result['interrupted_mid_run']} resumed mid-run;"
            f" {result['write_transactions']} transactions; one bare commit:"
            f" {result['disk_commit_us']} us before, {result['disk_commit_us_after']} us after)"
            f"  target {'met' if result['target_met'] else 'missed'}"
        )
    if profile is not None:
        print(report["profile_top_tottime"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
