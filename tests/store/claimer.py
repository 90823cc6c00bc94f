"""A worker process for the multi-process claim test (importable by ``spawn`` children)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tether.events import ModelFailed
from tether.store import SqliteStore


def claim_until_empty(path: str, owner: str, barrier: Any, results: Any) -> None:
    """Claim runs (and write to each) until none is left; report the ids claimed."""
    store = SqliteStore(path, busy_timeout=timedelta(seconds=30))
    claimed = asyncio.run(_claim_all(store, owner, barrier))
    results.put((owner, claimed))


async def _claim_all(store: SqliteStore, owner: str, barrier: Any) -> list[str]:
    claimed: list[str] = []
    barrier.wait()  # everyone starts claiming at once, event loops already running
    try:
        while (lease := await store.claim(owner, lease_for=timedelta(minutes=5))) is not None:
            claimed.append(lease.run_id)
            failed = ModelFailed(
                run_id=lease.run_id,
                step=1,
                error_class=owner,
                message="claimed",
                at=lease.expires_at,
            )
            await store.append([failed], lease)
            # Run the run, as a worker would. Without a pause the busy handler's back-off
            # (SQLite's lock is not fair) lets one process take nearly every claim.
            await asyncio.sleep(0.001)
    finally:
        await store.close()
    return claimed
