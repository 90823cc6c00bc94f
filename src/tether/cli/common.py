"""What every command shares: the store option, consoles, exit codes and error mapping."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from tether.errors import ConfigurationError, StoreError, TetherError
from tether.run import RunResult, Subscriber
from tether.runtime import Tether
from tether.status import RunStatus
from tether.store import InMemoryStore, SqliteStore, Store

__all__ = [
    "EXIT_CODES",
    "INTERNAL_ERROR",
    "USAGE_ERROR",
    "JsonOption",
    "StoreOption",
    "execute",
    "fail",
    "finish_with",
    "journal_location",
    "out",
    "print_json",
]

_T = TypeVar("_T")

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
"""Process exit code of a command that runs a run (``run``, ``resume``, ``review``)."""

USAGE_ERROR = 2
"""Exit code for bad command lines, unknown runs, agents that cannot be loaded, and
operations the run's state does not allow."""

INTERNAL_ERROR = 70
"""Exit code when tether itself fails (a bug or a broken store), not the run (``EX_SOFTWARE``)."""

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="TETHER_STORE",
        help="Store URL: sqlite:///path.db or memory://. Default ./.tether/tether.db.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only.")]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def execute(
    store: str | None,
    action: Callable[[Tether], Awaitable[_T]],
    *,
    subscribers: Sequence[Subscriber] = (),
) -> _T:
    """Open the store, run ``action`` against a runtime, close the store; map errors.

    Tether's own errors (bad input, unknown run, state conflicts) exit 2 with their
    message; anything else is a bug or a broken store and exits 70 with a traceback.
    """

    async def main() -> _T:
        runtime = Tether(store=store, subscribers=subscribers)
        try:
            return await action(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except (ConfigurationError, StoreError) as exc:
        fail(exc.message)
    except TetherError as exc:
        fail(f"{exc.error_class}: {exc.message}")
    except Exception:
        err.print("[red]internal error[/] (this is a bug in tether or its store):")
        err.print_exception()
        raise typer.Exit(INTERNAL_ERROR) from None


def print_json(value: Any) -> None:
    """Write ``value`` as one line of JSON on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def finish_with(result: RunResult[Any]) -> NoReturn:
    """Exit with the code of ``result.status``."""
    raise typer.Exit(EXIT_CODES[result.status])


def journal_location(store: Store) -> str | None:
    """Say where ``store`` keeps journals: a file path; ``None`` when nothing is kept."""
    if isinstance(store, SqliteStore):
        return str(store.path)
    if isinstance(store, InMemoryStore):
        return None
    return type(store).__name__
