"""``tether audit``: check and export the hash-chained audit log of a store.

``tether audit verify`` exits 0 when the chain is intact and 1 when it is broken (the
message names the first broken ``seq``); ``tether audit export --jsonl`` writes entries
as JSON lines on stdout. Usage errors exit 2 and tether's own failures 70, as every
command does.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tether.cli.common import JsonOption, StoreOption, execute, fail, out, print_json
from tether.cli.inspect import parse_age
from tether.governance.audit import VerifyReport, audit_log
from tether.runtime import Tether

__all__ = ["BROKEN", "app"]

BROKEN = 1
"""Exit code of ``tether audit verify`` when the chain is broken."""

app = typer.Typer(help="Check and export the audit log.", no_args_is_help=True)


@app.command()
def verify(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Check the audit chain: exit 0 if intact, 1 naming the first broken seq."""

    async def act(t: Tether) -> VerifyReport:
        return await audit_log(t.store, clock=t.clock).verify()

    report = execute(store, act)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "broken_seq": report.broken_seq,
                "problem": None if report.problem is None else report.problem.value,
                "detail": report.detail,
            }
        )
    elif report.ok:
        out.print(f"audit chain ok: {report.checked} entries", highlight=False)
    else:
        out.print(f"[red]{report.detail}[/] ({report.checked} entries ok before it)")
    if not report.ok:
        raise typer.Exit(BROKEN)


@app.command()
def export(
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON object per line (the only format).")
    ] = True,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's entries.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries this recent: 7d, 12h, 30m.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write audit entries in seq order as JSON lines on stdout."""
    if not jsonl:
        fail("JSON lines is the only export format: use --jsonl")
    try:
        age = None if since is None else parse_age(since)
    except ValueError as exc:
        fail(str(exc))

    async def act(t: Tether) -> int:
        start = None if age is None else t.clock.now() - age
        log = audit_log(t.store, clock=t.clock)
        return await log.export_jsonl(sys.stdout, since=start, run_id=run)

    execute(store, act)
