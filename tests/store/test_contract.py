"""The Store contract, run against InMemoryStore (the reference) and SqliteStore."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from tests.store.conftest import Harness
from tests.store.samples import (
    decided,
    finished,
    in_doubt,
    model_failed,
    new_id,
    one_of_each,
    started,
)
from tether.errors import LeaseLostError, RunNotFoundError, RunStateError
from tether.status import RunStatus
from tether.store import Store

pytestmark = pytest.mark.anyio

LONG = timedelta(minutes=5)
SHORT = timedelta(milliseconds=100)  # long enough to outlast a few writes on a busy machine
PAST_SHORT = 0.2  # seconds to wait until a SHORT lease has surely lapsed


async def test_is_a_store(harness: Harness) -> None:
    assert isinstance(harness.store, Store)


async def test_create_run_writes_row_and_first_event(harness: Harness) -> None:
    store = harness.store
    first = started(agent="support", task="refund", user="u1", agent_ref="app:agent")
    await store.create_run(first)
    record = await store.get_run(first.run_id)
    assert record is not None
    assert (record.run_id, record.agent, record.agent_ref, record.user, record.task) == (
        first.run_id,
        "support",
        "app:agent",
        "u1",
        "refund",
    )
    assert record.status is RunStatus.PENDING
    assert (record.attempts, record.events) == (0, 1)
    assert record.lease_owner is None and record.lease_expires_at is None
    assert record.finished_at is None
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset() == timedelta(0)
    assert record.updated_at == record.created_at
    assert list(await store.events(first.run_id)) == [first]


async def test_create_run_twice_is_refused(harness: Harness) -> None:
    first = started()
    await harness.store.create_run(first)
    with pytest.raises(RunStateError):
        await harness.store.create_run(started(first.run_id, task="other"))
    assert list(await harness.store.events(first.run_id)) == [first]
    # The refusal left the store usable.
    await harness.store.create_run(started())
    assert len(await harness.store.list_runs()) == 2


async def test_unknown_runs(harness: Harness) -> None:
    store = harness.store
    assert await store.get_run("run_nope") is None
    assert list(await store.events("run_nope")) == []
    with pytest.raises(RunNotFoundError):
        await store.claim("w", lease_for=LONG, run_id="run_nope")


async def test_claim_append_and_read_back(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w1", lease_for=LONG)
    assert lease is not None
    assert (lease.run_id, lease.owner, lease.epoch, lease.attempts) == (first.run_id, "w1", 1, 1)
    record = await store.get_run(first.run_id)
    assert record is not None
    assert record.status is RunStatus.RUNNING
    assert record.lease_owner == "w1" and record.lease_expires_at == lease.expires_at
    assert lease.expires_at - record.updated_at == LONG
    assert lease.expires_at.utcoffset() == timedelta(0)

    batch = [model_failed(first.run_id, 1), model_failed(first.run_id, 2)]
    await store.append(batch, lease)
    await store.append([model_failed(first.run_id, 3)], lease)
    await store.append([], lease)
    journal = await store.events(first.run_id)
    assert list(journal) == [first, *batch, model_failed(first.run_id, 3)]
    record = await store.get_run(first.run_id)
    assert record is not None and record.events == 4
    assert record.status is RunStatus.RUNNING


async def test_append_of_another_runs_event_is_refused(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    with pytest.raises(ValueError, match="lease's run"):
        await store.append([model_failed(first.run_id), model_failed(new_id())], lease)
    assert list(await store.events(first.run_id)) == [first]


async def test_append_after_reclaim_is_fenced_and_writes_nothing(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    old = await store.claim("w1", lease_for=SHORT)
    assert old is not None
    await store.append([model_failed(first.run_id, 1)], old)
    await harness.wait(PAST_SHORT)
    new = await store.claim("w2", lease_for=LONG)
    assert new is not None and new.run_id == first.run_id
    assert (new.epoch, new.attempts) == (2, 2)
    before = await store.get_run(first.run_id)

    with pytest.raises(LeaseLostError):
        await store.append([model_failed(first.run_id, 2), finished(first.run_id)], old)
    with pytest.raises(LeaseLostError):
        await store.renew(old, lease_for=LONG)
    await store.release(old)  # ignored: not the current lease

    assert list(await store.events(first.run_id)) == [first, model_failed(first.run_id, 1)]
    assert await store.get_run(first.run_id) == before
    await store.append([model_failed(first.run_id, 2)], new)
    assert len(await store.events(first.run_id)) == 3


async def test_append_and_renew_of_a_deleted_run(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    await store.append([finished(first.run_id)], lease)
    record = await store.get_run(first.run_id)
    assert record is not None and record.finished_at is not None
    assert await store.prune(finished_before=record.finished_at + timedelta(seconds=1)) == 1
    with pytest.raises(RunNotFoundError):
        await store.append([model_failed(first.run_id)], lease)
    with pytest.raises(RunNotFoundError):
        await store.renew(lease, lease_for=LONG)
    await store.release(lease)  # ignored


async def test_claim_next_takes_the_oldest_first(harness: Harness) -> None:
    store = harness.store
    ids = [new_id() for _ in range(4)]
    for run_id in ids:
        await store.create_run(started(run_id))
    claimed = []
    while (lease := await store.claim("w", lease_for=LONG)) is not None:
        claimed.append(lease.run_id)
    assert claimed == ids


async def test_claim_next_skips_live_leases_and_retakes_expired_ones(harness: Harness) -> None:
    store = harness.store
    first, second = started(), started()
    await store.create_run(first)
    await store.create_run(second)
    short = await store.claim("w1", lease_for=SHORT)
    long = await store.claim("w2", lease_for=LONG)
    assert short is not None and long is not None
    assert (short.run_id, long.run_id) == (first.run_id, second.run_id)
    assert await store.claim("w3", lease_for=LONG) is None
    await harness.wait(PAST_SHORT)
    again = await store.claim("w3", lease_for=LONG)
    assert again is not None
    assert (again.run_id, again.epoch, again.attempts) == (first.run_id, 2, 2)
    assert await store.claim("w4", lease_for=LONG) is None
    record = await store.get_run(first.run_id)
    assert record is not None
    assert (record.status, record.lease_owner, record.attempts) == (RunStatus.RUNNING, "w3", 2)


async def test_renew_extends_the_lease(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=SHORT)
    assert lease is not None
    renewed = await store.renew(lease, lease_for=LONG)
    assert renewed.expires_at > lease.expires_at + timedelta(minutes=4)
    assert (renewed.run_id, renewed.owner, renewed.epoch, renewed.attempts) == (
        lease.run_id,
        lease.owner,
        lease.epoch,
        lease.attempts,
    )
    record = await store.get_run(first.run_id)
    assert record is not None and record.lease_expires_at == renewed.expires_at
    await harness.wait(PAST_SHORT)
    assert await store.claim("thief", lease_for=LONG) is None
    assert await store.claim("thief", lease_for=LONG, run_id=first.run_id) is None


async def test_release_makes_a_running_run_pending_and_resets_attempts(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    one = await store.claim("w1", lease_for=SHORT)
    assert one is not None
    await harness.wait(PAST_SHORT)
    two = await store.claim("w2", lease_for=LONG)
    assert two is not None and two.attempts == 2
    await store.release(two)
    record = await store.get_run(first.run_id)
    assert record is not None
    assert record.status is RunStatus.PENDING
    assert (record.attempts, record.lease_owner, record.lease_expires_at) == (0, None, None)
    three = await store.claim("w3", lease_for=LONG)
    assert three is not None
    assert (three.run_id, three.epoch, three.attempts) == (first.run_id, 3, 1)


async def test_claim_next_orders_pending_and_lapsed_runs_by_age(harness: Harness) -> None:
    store = harness.store
    runs = [started() for _ in range(70)]  # more lapsed leases than the SQLite probe takes
    for run in runs:
        await store.create_run(run)
    released = await store.claim("w", lease_for=LONG)
    assert released is not None and released.run_id == runs[0].run_id
    await store.release(released)  # pending again, and still the oldest
    first = await store.claim("w", lease_for=LONG)
    assert first is not None and first.run_id == runs[0].run_id
    for i, run in enumerate(runs[1:]):
        # Younger runs get shorter leases: lapsing order is not creation order. By id, so
        # that a slow machine, where the first leases lapse before the last claim, passes.
        lease_for = SHORT + timedelta(milliseconds=5 * (70 - i))
        lease = await store.claim("w", lease_for=lease_for, run_id=run.run_id)
        assert lease is not None
    await harness.wait(PAST_SHORT + 0.35)
    newest = started()
    await store.create_run(newest)
    order = []
    while (lease := await store.claim("w2", lease_for=LONG)) is not None:
        order.append(lease.run_id)
        if len(order) == 10:
            await store.release(lease)  # pending again, older than the rest: next
            assert await store.claim("w2", lease_for=LONG) == dataclasses.replace(
                lease, epoch=lease.epoch + 1, attempts=1, expires_at=mock.ANY
            )
    assert order == [r.run_id for r in runs[1:]] + [newest.run_id]


async def test_a_released_lease_cannot_write(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    await store.release(lease)
    before = await store.get_run(first.run_id)
    with pytest.raises(LeaseLostError, match="released"):
        await store.append([model_failed(first.run_id)], lease)
    with pytest.raises(LeaseLostError, match="released"):
        await store.renew(lease, lease_for=LONG)
    await store.release(lease)
    assert await store.get_run(first.run_id) == before
    assert list(await store.events(first.run_id)) == [first]
    again = await store.claim("w", lease_for=LONG)
    assert again is not None and again.epoch == 2


async def test_claim_by_id(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w1", lease_for=LONG, run_id=first.run_id)
    assert lease is not None and (lease.epoch, lease.attempts) == (1, 1)
    # A live lease holds it against anyone who does not force.
    assert await store.claim("w2", lease_for=LONG, run_id=first.run_id) is None
    forced = await store.claim("canceller", lease_for=LONG, run_id=first.run_id, force=True)
    assert forced is not None
    assert (forced.owner, forced.epoch, forced.attempts) == ("canceller", 2, 2)
    with pytest.raises(LeaseLostError):
        await store.append([model_failed(first.run_id)], lease)
    record = await store.get_run(first.run_id)
    assert record is not None and record.lease_owner == "canceller"


async def test_running_run_with_lapsed_lease_is_claimable_by_id(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    await store.claim("w1", lease_for=SHORT)
    await harness.wait(PAST_SHORT)
    lease = await store.claim("w2", lease_for=LONG, run_id=first.run_id)
    assert lease is not None and (lease.owner, lease.epoch) == ("w2", 2)


async def test_in_doubt_run_waits_for_review(harness: Harness) -> None:
    store = harness.store
    first, other = started(), started()
    await store.create_run(first)
    lease = await store.claim("w1", lease_for=LONG)
    assert lease is not None
    await store.append([in_doubt(first.run_id)], lease)
    record = await store.get_run(first.run_id)
    assert record is not None
    assert record.status is RunStatus.NEEDS_REVIEW and record.finished_at is None
    await store.release(lease)
    record = await store.get_run(first.run_id)
    assert record is not None
    assert (record.status, record.attempts, record.lease_owner) == (
        RunStatus.NEEDS_REVIEW,
        0,
        None,
    )

    await store.create_run(other)
    next_lease = await store.claim("w2", lease_for=LONG)
    assert next_lease is not None and next_lease.run_id == other.run_id
    assert await store.claim("w2", lease_for=LONG) is None

    review = await store.claim("reviewer", lease_for=LONG, run_id=first.run_id)
    assert review is not None and review.epoch == 2
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.NEEDS_REVIEW
    await store.append([decided(first.run_id)], review)
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.RUNNING


async def test_last_status_of_a_batch_wins(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    await store.append([in_doubt(first.run_id), decided(first.run_id)], lease)
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.RUNNING
    await store.append([decided(first.run_id), in_doubt(first.run_id, 2)], lease)
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.NEEDS_REVIEW


async def test_run_finished_sets_status_and_finished_at(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    await store.append(
        [model_failed(first.run_id), finished(first.run_id, RunStatus.FAILED)], lease
    )
    record = await store.get_run(first.run_id)
    assert record is not None
    assert record.status is RunStatus.FAILED
    assert record.finished_at is not None and record.finished_at == record.updated_at
    assert record.finished_at >= record.created_at
    await store.release(lease)
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.FAILED
    assert record.finished_at is not None
    assert await store.claim("w", lease_for=LONG) is None
    assert await store.claim("w", lease_for=LONG, run_id=first.run_id) is None
    assert await store.claim("w", lease_for=LONG, run_id=first.run_id, force=True) is None


async def test_list_runs_newest_first_with_filters(harness: Harness) -> None:
    store = harness.store
    runs = [
        started(agent="a"),
        started(agent="b"),
        started(agent="a"),
        started(agent="b"),
    ]
    for run in runs:
        await store.create_run(run)
        await harness.wait(0.002)
    ids = [r.run_id for r in runs]
    lease = await store.claim("w", lease_for=LONG)  # the oldest: runs[0]
    assert lease is not None
    await store.append([finished(ids[0])], lease)

    assert [r.run_id for r in await store.list_runs()] == ids[::-1]
    assert [r.run_id for r in await store.list_runs(agent="a")] == [ids[2], ids[0]]
    assert [r.run_id for r in await store.list_runs(status=RunStatus.PENDING)] == [
        ids[3],
        ids[2],
        ids[1],
    ]
    pending_b = await store.list_runs(status=RunStatus.PENDING, agent="b", limit=1)
    assert [r.run_id for r in pending_b] == [ids[3]]
    assert [r.run_id for r in await store.list_runs(limit=2)] == [ids[3], ids[2]]
    assert list(await store.list_runs(limit=0)) == []
    completed = await store.list_runs(status=RunStatus.COMPLETED)
    assert [(r.run_id, r.events) for r in completed] == [(ids[0], 2)]
    assert list(await store.list_runs(agent="nobody")) == []


async def test_prune_deletes_finished_runs_and_their_journals(harness: Harness) -> None:
    store = harness.store
    old, new, open_, doubted = started(), started(), started(), started()
    for run in (old, new, open_, doubted):
        await store.create_run(run)
    for run in (old, new, open_, doubted):
        lease = await store.claim("w", lease_for=LONG, run_id=run.run_id)
        assert lease is not None
        if run is old or run is new:
            await store.append([finished(run.run_id)], lease)
            await harness.wait(0.01)
        if run is doubted:
            await store.append([in_doubt(run.run_id)], lease)
    new_record = await store.get_run(new.run_id)
    assert new_record is not None and new_record.finished_at is not None
    # Strictly before: the run finished at that very time stays.
    assert await store.prune(finished_before=new_record.finished_at) == 1
    assert await store.get_run(old.run_id) is None
    assert list(await store.events(old.run_id)) == []
    assert await store.get_run(new.run_id) == new_record
    later = new_record.finished_at + timedelta(days=365)
    assert await store.prune(finished_before=later) == 1
    assert {r.run_id for r in await store.list_runs()} == {open_.run_id, doubted.run_id}
    assert len(await store.events(doubted.run_id)) == 2
    assert await store.prune(finished_before=later) == 0


async def test_every_event_kind_round_trips(harness: Harness) -> None:
    store = harness.store
    first = started(agent="ä", task="line\nbreak «»", user="u", agent_ref="app.py:agent")
    await store.create_run(first)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    rest = one_of_each(first.run_id)
    await store.append(rest[:3], lease)
    for event in rest[3:]:
        await store.append([event], lease)
    journal = list(await store.events(first.run_id))
    assert journal == [first, *rest]
    assert [type(e) for e in journal] == [type(e) for e in [first, *rest]]
    assert all(e.at.utcoffset() is not None for e in journal)
    record = await store.get_run(first.run_id)
    assert record is not None and record.events == len(journal)
    assert record.status is RunStatus.MAX_STEPS


async def test_times_are_utc_and_move_forward(harness: Harness) -> None:
    store = harness.store
    first = started()
    await store.create_run(first)
    created = await store.get_run(first.run_id)
    await harness.wait(0.01)
    lease = await store.claim("w", lease_for=LONG)
    assert lease is not None
    claimed = await store.get_run(first.run_id)
    assert created is not None and claimed is not None
    assert claimed.updated_at > created.updated_at
    assert claimed.created_at == created.created_at
    assert claimed.updated_at.tzinfo is not None
    assert claimed.updated_at.astimezone(UTC) == claimed.updated_at


async def test_runs_without_an_agent_ref_are_claimed_only_by_id(harness: Harness) -> None:
    store = harness.store
    orphan = started(agent_ref=None)
    await store.create_run(orphan)
    assert await store.claim("w", lease_for=LONG) is None, "a worker could not load it"
    lease = await store.claim("w", lease_for=LONG, run_id=orphan.run_id)
    assert lease is not None and lease.run_id == orphan.run_id


async def test_create_run_claimed_and_append_with_release(harness: Harness) -> None:
    store = harness.store
    first = started()
    lease = await store.create_run(first, owner="me", lease_for=LONG)
    assert lease is not None and lease.epoch == 1 and lease.attempts == 1
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.RUNNING
    assert record.lease_owner == "me"
    assert await store.claim("other", lease_for=LONG) is None, "it is owned already"
    await store.append([finished(first.run_id, RunStatus.COMPLETED)], lease, release=True)
    record = await store.get_run(first.run_id)
    assert record is not None and record.status is RunStatus.COMPLETED
    assert record.lease_owner is None and record.attempts == 0 and record.events == 2
    with pytest.raises(LeaseLostError):
        await store.append([model_failed(first.run_id)], lease)


# --- remembered values (shared across runs) -------------------------------------------


async def test_remembered_values_are_recalled_until_they_expire(harness: Harness) -> None:
    store = harness.store
    assert await store.recall("tool:pay", "k") is None
    await store.remember("tool:pay", "k", '{"paid": 1}', ttl=timedelta(seconds=0.3), source="r1")
    kept = await store.recall("tool:pay", "k")
    assert kept is not None and (kept.value, kept.source) == ('{"paid": 1}', "r1")
    assert kept.expires_at.tzinfo is not None
    assert await store.recall("tool:pay", "other") is None
    assert await store.recall("tool:other", "k") is None, "namespaces are separate"
    await harness.wait(0.35)
    assert await store.recall("tool:pay", "k") is None


async def test_remembering_again_replaces_the_value(harness: Harness) -> None:
    store = harness.store
    await store.remember("n", "k", "a", ttl=timedelta(minutes=1))
    await store.remember("n", "k", "b", ttl=timedelta(minutes=1), source="r2")
    kept = await store.recall("n", "k")
    assert kept is not None and (kept.value, kept.source) == ("b", "r2")


async def test_prune_forgets_expired_values(harness: Harness) -> None:
    store = harness.store
    await store.remember("n", "old", "x", ttl=timedelta(seconds=0.1))
    await store.remember("n", "new", "y", ttl=timedelta(minutes=5))
    await harness.wait(0.15)
    await store.prune(finished_before=datetime.now(UTC))
    assert await store.recall("n", "new") is not None
    assert await store.recall("n", "old") is None
