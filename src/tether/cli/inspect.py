"""Commands that read and manage stored runs: ``runs``, ``runs prune``, ``show``, ``cancel``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from tether.cli.common import JsonOption, StoreOption, execute, fail, out, print_json
from tether.cli.tree import run_tree
from tether.events import event_from_json, event_to_json
from tether.redact import DEFAULT_REDACTOR
from tether.runtime import Tether
from tether.status import RunStatus
from tether.store import RunRecord

__all__ = ["parse_age", "register"]

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``15m`` or ``90s`` into a ``timedelta``."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 15m or 90s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _record_json(record: RunRecord) -> dict[str, object]:
    return {
        "run_id": record.run_id,
        "agent": record.agent,
        "agent_ref": record.agent_ref,
        "user": record.user,
        "task": record.task,
        "status": record.status.value,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "finished_at": None if record.finished_at is None else record.finished_at.isoformat(),
        "attempts": record.attempts,
        "lease_owner": record.lease_owner,
        "events": record.events,
    }


runs_app = typer.Typer(help="List stored runs (and prune old ones).", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    """Add ``runs``, ``runs prune``, ``show`` and ``cancel`` to ``app``."""
    runs_app.callback(invoke_without_command=True)(runs)
    runs_app.command("prune")(prune)
    app.add_typer(runs_app, name="runs")
    app.command()(show)
    app.command()(cancel)


def runs(
    ctx: typer.Context,
    status: Annotated[RunStatus | None, typer.Option(help="Only this status.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    records = execute(store, lambda t: t.store.list_runs(status=status, agent=agent, limit=limit))
    if as_json:
        print_json([_record_json(r) for r in records])
        return
    table = Table(
        Column("run", no_wrap=True, min_width=36),
        Column("agent", no_wrap=True),
        Column("status", no_wrap=True, min_width=16),
        Column("updated", no_wrap=True, min_width=19),
        Column("task", no_wrap=True, overflow="ellipsis"),
        box=None,
    )
    for r in records:
        table.add_row(
            r.run_id,
            escape(r.agent),
            r.status.value,
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.task[:60]),
        )
    out.print(table)


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of finished runs to delete: 30d, 12h.")
    ],
    store: StoreOption = None,
) -> None:
    """Delete runs that finished longer ago than --older-than, with their journals."""
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        fail(str(exc))

    async def act(t: Tether) -> int:
        return await t.store.prune(finished_before=t.clock.now() - age)

    deleted = execute(store, act)
    typer.echo(f"deleted {deleted} runs")


def show(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Print a run as a tree of steps, calls and results (--json: its journal as JSON)."""

    async def act(t: Tether) -> tuple[RunRecord | None, list[bytes]]:
        record = await t.store.get_run(run_id)
        events = await t.store.events(run_id)
        return record, [event_to_json(e) for e in events]

    record, journal = execute(store, act)
    if record is None:
        fail(f"no run {run_id}")
    if as_json:
        for line in journal:
            redacted = DEFAULT_REDACTOR.redact(json.loads(line))
            typer.echo(json.dumps(redacted, ensure_ascii=False, separators=(",", ":")))
        return
    out.print(run_tree([event_from_json(line) for line in journal]), highlight=False)
    out.print(
        f"[bold]{record.status.value}[/] · {record.events} events · attempts "
        f"{record.attempts} · owner {record.lease_owner or '-'}",
        highlight=False,
    )


def cancel(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    reason: Annotated[str, typer.Option(help="Journaled with the cancellation.")] = ("cancelled"),
    store: StoreOption = None,
) -> None:
    """Cancel a run: it ends `cancelled`, and its owner's next write is refused."""
    record = execute(store, lambda t: t.cancel(run_id, reason=reason))
    typer.echo(f"{record.run_id} {record.status.value}")
