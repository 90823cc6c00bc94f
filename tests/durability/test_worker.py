"""The worker: drives submitted runs, recovers abandoned ones, stops cleanly."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from tests.durability import agents
from tether import RunStatus, Tether
from tether.store import SqliteStore
from tether.worker import Worker

pytestmark = pytest.mark.anyio

REF = "tests.durability.agents:flow"


@pytest.fixture(autouse=True)
def fresh_ledger() -> None:
    agents.executions.clear()
    agents.keys.clear()


async def test_worker_drives_submitted_runs_to_completion(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    runtime = Tether(store=store)
    ids = [await runtime.submit(REF, f"task {i}", user="u1") for i in range(6)]
    stats = await Worker(runtime, concurrency=3, poll_interval=0.01).run(until_idle=True)
    assert stats.claimed == 6 and stats.finished == 6
    for run_id in ids:
        record = await store.get_run(run_id)
        assert record is not None and record.status is RunStatus.COMPLETED
        assert record.user == "u1" and record.agent_ref == REF
    assert agents.executions == {"lookup": 6, "pay": 6, "notify": 6}


async def test_worker_recovers_a_run_whose_owner_died(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    runtime = Tether(store=store, lease_for=timedelta(milliseconds=200))
    run_id = await runtime.submit(REF, "go")
    dead = await store.claim("dead-worker", lease_for=timedelta(milliseconds=100))
    assert dead is not None and dead.run_id == run_id
    worker = Worker(runtime, poll_interval=0.02)
    assert (await worker.run(until_idle=True)).claimed == 0, "the dead owner's lease is live"
    await asyncio.sleep(0.15)
    stats = await worker.run(until_idle=True)
    assert stats.claimed == 1
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.COMPLETED


async def test_stop_releases_runs_at_a_step_boundary(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    runtime = Tether(store=store)
    run_id = await runtime.submit("tests.durability.slow:agent", "go")
    worker = Worker(runtime, poll_interval=0.01)
    task = asyncio.create_task(worker.run())
    from tests.durability import slow

    await asyncio.wait_for(slow.started.wait(), 5)
    worker.stop()
    stats = await asyncio.wait_for(task, 5)
    assert stats.released == 1
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.PENDING
    assert record.lease_owner is None and record.attempts == 0
    stats = await Worker(runtime, poll_interval=0.01).run(until_idle=True)
    assert stats.finished == 1
    assert slow.calls == 1, "the call finished before the stop and was not repeated"
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.COMPLETED


async def test_a_run_whose_agent_cannot_load_ends_failed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    runtime = Tether(store=store)
    run_id = await runtime.submit(REF, "go")
    worker = Worker(runtime, poll_interval=0.01, load=_broken_loader)
    await worker.run(until_idle=True)
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.FAILED
    journal = await store.events(run_id)
    assert journal[-1].kind == "run_finished" and journal[-1].error_class == "agent_load_error"


def _broken_loader(reference: str):  # type: ignore[no-untyped-def]
    from tether.errors import AgentLoadError

    raise AgentLoadError(f"cannot import {reference}")


async def test_free_slots_are_claimed_together_in_one_commit(tmp_path: Path) -> None:
    from tests.store.test_group_commit import commits, traced

    store = SqliteStore(tmp_path / "w.db")
    runtime = Tether(store=store)
    for i in range(3):
        await runtime.submit(REF, f"task {i}")
    worker = Worker(runtime, concurrency=3, poll_interval=0.01)
    with traced(store) as seen:
        await worker._claim(3)
    assert commits(seen) == 1, "three claims, one transaction"
    records = await store.list_runs(status=RunStatus.RUNNING)
    assert len(records) == 3 and len({r.run_id for r in records}) == 3
    await store.close()
