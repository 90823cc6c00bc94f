"""``tether memory``: show, search and consolidate a memory directory.

The directory is ``--home``, else ``TETHER_HOME``, else ``./.tether/home``. A directory
that does not exist is shown as empty; ``consolidate`` creates nothing when there is
nothing to do. Errors (a ``state.json`` that is not JSON) exit 2 with the reason.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tether.cli.common import JsonOption, fail, out, print_json
from tether.errors import ConfigurationError
from tether.memory import Memory

__all__ = ["app"]

app = typer.Typer(help="Long-term memory: show, search, consolidate.", no_args_is_help=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="TETHER_HOME",
        help="Memory directory. Default ./.tether/home.",
        file_okay=False,
    ),
]


def _memory(home: Path | None) -> Memory:
    try:
        return Memory(home)
    except ConfigurationError as exc:
        fail(exc.message)


@app.command()
def show(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Print MEMORY.md, the daily logs not yet consolidated, and state.json."""
    memory = _memory(home)
    files = memory.files
    try:
        state = memory.state()
    except ConfigurationError as exc:
        fail(exc.message)
    logs = {path.name: files.read(path) for _, path in files.daily_logs()}
    if as_json:
        print_json(
            {
                "home": str(memory.home),
                "memory_md": files.read(files.memory_md),
                "daily_logs": logs,
                "state": state,
            }
        )
        return
    out.print(f"[bold]memory home[/] {escape(str(memory.home))}", highlight=False)
    text = files.read(files.memory_md).strip()
    out.print("\n[bold]MEMORY.md[/]", highlight=False)
    out.print(escape(text) if text else "[dim](empty)[/]", highlight=False)
    for name, log in logs.items():
        out.print(f"\n[bold]memory/{name}[/]", highlight=False)
        out.print(escape(log.strip()), highlight=False)
    if not logs:
        out.print("\n[dim]no daily logs waiting to be consolidated[/]", highlight=False)
    if state:
        out.print("\n[bold]state.json[/]", highlight=False)
        out.print_json(data=state)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words to look for.")],
    limit: Annotated[int, typer.Option(min=1, help="Most hits to show.")] = 5,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search every memory file (facts, daily logs, archive); hand edits included."""
    hits = _memory(home).search(query, limit=limit)
    if as_json:
        print_json([asdict(h) for h in hits])
        return
    for hit in hits:
        out.print(f"[bold]{escape(hit.path)}[/] [dim]{escape(hit.heading)}[/]", highlight=False)
        out.print(escape(hit.text) + "\n", highlight=False)
    if not hits:
        out.print(f"nothing matches {query!r}", highlight=False)


@app.command()
def consolidate(
    include_today: Annotated[
        bool, typer.Option("--include-today", help="Consolidate today's log too.")
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Distil the daily logs into MEMORY.md (duplicates merged, runs kept), then archive them."""
    report = _memory(home).consolidate(include_today=include_today)
    if as_json:
        print_json(asdict(report))
        return
    if not report.logs:
        out.print("nothing to consolidate", highlight=False)
        return
    out.print(
        f"consolidated {len(report.logs)} log(s), {report.entries} entries: "
        f"{report.added} new facts, {report.merged} merged, "
        f"{report.overflowed} moved to the archive to keep MEMORY.md within its size",
        highlight=False,
    )
