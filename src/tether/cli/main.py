"""The ``tether`` command line.

Exit codes of ``tether run`` (stable, documented in ``docs/cli.md``): 0 only for
``completed``; see :data:`EXIT_CODES` for the others; 2 for usage errors such as an agent
reference that does not load; 70 when tether itself fails.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from tether import __version__
from tether.cli.loading import load_agent
from tether.cli.timeline import Timeline, print_summary
from tether.errors import AgentLoadError, ConfigurationError
from tether.runtime import Tether
from tether.status import RunStatus

__all__ = ["EXIT_CODES", "INTERNAL_ERROR", "USAGE_ERROR", "app", "main"]

EXIT_CODES: dict[RunStatus, int] = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.MAX_STEPS: 3,
    RunStatus.TIMED_OUT: 4,
    RunStatus.TOKEN_LIMIT: 5,
    RunStatus.TOOL_CALL_LIMIT: 6,
    RunStatus.BUDGET_EXCEEDED: 7,
    RunStatus.NEEDS_REVIEW: 8,
    RunStatus.BLOCKED: 9,
    RunStatus.CANCELLED: 10,
    RunStatus.WAITING_APPROVAL: 11,
    RunStatus.WAITING_USER: 12,
    RunStatus.PENDING: 13,
    RunStatus.RUNNING: 13,
}
"""Process exit code of ``tether run`` for each final status."""

USAGE_ERROR = 2
"""Exit code for bad command lines and agents that cannot be loaded."""

INTERNAL_ERROR = 70
"""Exit code when tether itself fails (a bug or a broken store), not the run (``EX_SOFTWARE``)."""

app = typer.Typer(
    name="tether",
    help="A durable, bounded and observable runtime for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A durable, bounded and observable runtime for LLM agents."""


@app.command()
def run(
    agent_ref: Annotated[
        str, typer.Argument(metavar="AGENT", help="'path/to/file.py:agent' or 'module:agent'.")
    ],
    task: Annotated[str, typer.Argument(help="What to ask the agent.")],
    user: Annotated[str | None, typer.Option(help="Id of the user the run acts for.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the result, nothing else.")
    ] = False,
) -> None:
    """Run an agent on a task and print its timeline, status, output, tokens and cost."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        agent = load_agent(agent_ref)
    except AgentLoadError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(USAGE_ERROR) from None
    subscribers = () if as_json else (Timeline(out),)
    try:
        result = Tether(subscribers=subscribers).run_sync(agent, task, user=user)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        else:
            print_summary(out, result)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(USAGE_ERROR) from None
    except Exception:
        err.print("[red]internal error[/] (this is a bug in tether or its store):")
        err.print_exception()
        raise typer.Exit(INTERNAL_ERROR) from None
    raise typer.Exit(EXIT_CODES[result.status])


def main() -> None:
    """Entry point of the ``tether`` console script."""
    app()
