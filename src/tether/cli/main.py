"""The ``tether`` command line.

Exit codes (stable, documented in ``docs/cli.md``): commands that run a run exit with
:data:`~tether.cli.common.EXIT_CODES` of its status (0 only for ``completed``); 2 for
usage errors (an agent reference that does not load, an unknown run, a state that does
not allow the operation); 70 when tether itself fails.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tether import __version__
from tether.cli import approvals, demo, inspect, stats
from tether.cli.audit import app as audit_app
from tether.cli.common import (
    EXIT_CODES,
    INTERNAL_ERROR,
    USAGE_ERROR,
    JsonOption,
    StoreOption,
    execute,
    fail,
    finish_with,
    journal_location,
    out,
    print_json,
)
from tether.cli.grants import app as grants_app
from tether.cli.memory import app as memory_app
from tether.cli.timeline import Timeline, print_summary
from tether.errors import AgentLoadError, ConfigurationError
from tether.loading import load_agent
from tether.run import RunResult
from tether.runtime import Decision, Tether
from tether.worker import Worker

_T = TypeVar("_T")

__all__ = ["EXIT_CODES", "INTERNAL_ERROR", "USAGE_ERROR", "app", "main"]

app = typer.Typer(
    name="tether",
    help="A durable, bounded and observable runtime for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo.register(app)
inspect.register(app)
approvals.register(app)
stats.register(app)
app.add_typer(audit_app, name="audit")
app.add_typer(grants_app, name="grants")
app.add_typer(memory_app, name="memory")

AgentArgument = Annotated[
    str, typer.Argument(metavar="AGENT", help="'path/to/file.py:agent' or 'module:agent'.")
]
UserOption = Annotated[str | None, typer.Option(help="Id of the user the run acts for.")]


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


def _report(
    result: RunResult[Any], as_json: bool, timeline: Timeline | None, journal: str | None
) -> None:
    if as_json:
        print_json(result.to_dict())
    else:
        caught = timeline.caught if timeline is not None else None
        print_summary(out, result, caught=caught, journal=journal)
    finish_with(result)


def _located(
    step: Callable[[Tether], Awaitable[_T]],
) -> Callable[[Tether], Awaitable[tuple[_T, str | None]]]:
    """Wrap a runtime action so it also returns where the store keeps the journal."""

    async def act(runtime: Tether) -> tuple[_T, str | None]:
        return await step(runtime), journal_location(runtime.store)

    return act


@app.command()
def run(
    agent_ref: AgentArgument,
    task: Annotated[str, typer.Argument(help="What to ask the agent.")],
    user: UserOption = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Run an agent on a task and print its timeline, status, output, tokens and cost.

    The run is journaled in the store, so `tether resume` or a worker can finish it if
    this process dies.
    """
    try:
        agent = load_agent(agent_ref)
    except AgentLoadError as exc:
        fail(exc.message)
    timeline = None if as_json else Timeline(out)
    result, journal = execute(
        store,
        _located(lambda t: t.run(agent, task, user=user, agent_ref=agent_ref)),
        subscribers=() if timeline is None else (timeline,),
    )
    _report(result, as_json, timeline, journal)


@app.command()
def submit(
    agent_ref: AgentArgument,
    task: Annotated[str, typer.Argument(help="What to ask the agent.")],
    user: UserOption = None,
    store: StoreOption = None,
) -> None:
    """Accept a run for a worker to execute; print its id."""
    run_id = execute(store, lambda t: t.submit(agent_ref, task, user=user))
    typer.echo(run_id)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Continue an interrupted run from its journal (recorded steps are not repeated)."""
    timeline = None if as_json else Timeline(out)
    result, journal = execute(
        store,
        _located(lambda t: t.resume(run_id)),
        subscribers=() if timeline is None else (timeline,),
    )
    _report(result, as_json, timeline, journal)


@app.command()
def review(
    run_id: Annotated[str, typer.Argument(help="The run with calls in doubt.")],
    retry: Annotated[bool, typer.Option("--retry", help="Run the call again.")] = False,
    skip: Annotated[
        bool, typer.Option("--skip", help="Tell the model the outcome is unknown.")
    ] = False,
    result: Annotated[
        str | None, typer.Option("--result", help="Record this JSON as what the call returned.")
    ] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who decides (journaled).")] = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Only journal the decision.")
    ] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Decide what an interrupted at-most-once call did, then continue the run."""
    chosen = [name for name, on in (("retry", retry), ("skip", skip)) if on]
    if result is not None:
        chosen.append("result")
    if len(chosen) != 1:
        fail("choose exactly one of --retry, --skip or --result JSON")
    decision: Decision = "retry" if retry else "skip" if skip else "result"
    if result is not None:
        import json

        try:
            json.loads(result)
        except ValueError as exc:
            fail(f"--result must be JSON: {exc}")

    async def act(runtime: Tether) -> RunResult[Any] | list[int]:
        steps = await runtime.review(
            run_id,
            decision,
            result=result,
            reviewer=reviewer,
        )
        if no_resume:
            return steps
        return await runtime.resume(run_id)

    timeline = None if as_json or no_resume else Timeline(out)
    outcome, journal = execute(
        store, _located(act), subscribers=() if timeline is None else (timeline,)
    )
    if isinstance(outcome, list):
        typer.echo(f"decided steps {outcome}; the run is pending")
        return
    _report(outcome, as_json, timeline, journal)


@app.command(name="undo")
def undo_run(
    run_id: Annotated[str, typer.Argument(help="The finished run to undo.")],
    to_step: Annotated[
        int, typer.Option(min=1, help="Undo the effects of this step and later ones.")
    ] = 1,
    user: UserOption = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Run the compensations of a finished run's effects, newest first; report the rest.

    Exits 0 when every effect that can be undone was undone (irreversible ones are listed),
    1 when a compensation failed (run it again to retry), 2 for usage errors.
    """
    from tether.undo import undo

    report = execute(store, lambda t: undo(t, run_id, to_step=to_step, user=user))
    if as_json:
        print_json(
            {
                "run_id": report.run_id,
                "undo_run_id": report.undo_run_id,
                "complete": report.complete,
                "steps": [
                    {"step": s.step, "tool": s.tool, "outcome": s.outcome, "message": s.message}
                    for s in report.steps
                ],
            }
        )
    else:
        if not report.steps:
            out.print("nothing to undo: the run made no side-effecting call")
        for item in report.steps:
            note = f" ({item.message})" if item.message else ""
            out.print(f"step {item.step:>4}  {item.tool}  {item.outcome}{note}", highlight=False)
        out.print(f"[dim]journaled as run {report.undo_run_id}[/]", highlight=False)
    raise typer.Exit(0 if report.complete else 1)


class InDoubtChoice(StrEnum):
    """Choices of ``--in-doubt`` (see ``Tether(in_doubt=...)``)."""

    WAIT = "wait"
    END = "end"


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Runs driven at once.")] = 4,
    lease: Annotated[float, typer.Option(min=1, help="Lease length in seconds.")] = 30.0,
    poll: Annotated[float, typer.Option(min=0.01, help="Seconds between polls when idle.")] = 0.5,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when no run is left to claim.")
    ] = False,
    in_doubt: Annotated[
        InDoubtChoice,
        typer.Option(
            help="A call in doubt after a crash: 'wait' for `tether review`, or 'end' the run."
        ),
    ] = InDoubtChoice.WAIT,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, help="Serve Prometheus metrics on this port at /metrics."),
    ] = None,
    metrics_addr: Annotated[str, typer.Option(help="Address to serve metrics on.")] = "127.0.0.1",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log every run event as a JSON line on stderr.")
    ] = False,
    memory_home: Annotated[
        Path | None,
        typer.Option(
            "--memory-home",
            file_okay=False,
            help="Consolidate this memory directory once a day (see `tether memory`).",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Execute pending runs and recover runs whose worker died. SIGTERM stops it cleanly."""
    from datetime import timedelta

    from tether.observe.logs import EventLog, configure_logging
    from tether.observe.metrics import Metrics, serve_metrics

    async def act(runtime: Tether) -> Any:
        import asyncio

        runtime.lease_for = timedelta(seconds=lease)
        runtime.in_doubt = "end" if in_doubt is InDoubtChoice.END else "wait"
        if log_json:
            configure_logging(json=True)
            runtime.subscribers = (*runtime.subscribers, EventLog())
        server = budgets = None
        if metrics_port is not None:
            metrics = Metrics()
            runtime.subscribers = (*runtime.subscribers, metrics)
            server = serve_metrics(metrics, metrics_port, addr=metrics_addr)
            budgets = asyncio.create_task(_budget_gauges(runtime, metrics, poll))
        from tether.memory import Memory

        memory = None if memory_home is None else Memory(memory_home)
        pool = Worker(runtime, concurrency=concurrency, poll_interval=poll, memory=memory)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, pool.stop)
        try:
            return await pool.run(until_idle=until_idle)
        finally:
            if budgets is not None:
                budgets.cancel()
            if server is not None:
                server.shutdown()

    stats = execute(store, act)
    typer.echo(
        f"claimed {stats.claimed} · finished {stats.finished} · released {stats.released} · "
        f"lost {stats.lost}"
    )


async def _budget_gauges(runtime: Tether, metrics: Any, every_s: float) -> None:
    """Refresh the budget gauges from the store's windows while the worker runs."""
    import asyncio

    from tether.governance.budgets import budget_book

    try:
        book = budget_book(runtime.store)
    except ConfigurationError:
        return  # a store without budgets
    while True:
        metrics.observe_budgets(await book.usage())
        await asyncio.sleep(max(every_s, 1.0))


budgets_app = typer.Typer(
    help="Show budget windows (spent, reserved, left) and raise them.",
    invoke_without_command=True,
)
app.add_typer(budgets_app, name="budgets")


@budgets_app.callback()
def budgets(ctx: typer.Context, as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Show each budget window: its limit, and what is spent, reserved and left (USD).

    Reservations of runs whose lease lapsed (crashed workers) are released first.
    """
    if ctx.invoked_subcommand is not None:
        return
    from tether.governance.budgets import budget_book

    async def act(runtime: Tether) -> list[dict[str, Any]]:
        book = budget_book(runtime.store)
        await book.release_lapsed()
        return [w.as_json() for w in await book.usage()]

    windows = execute(store, act)
    if as_json:
        print_json(windows)
        return
    if not windows:
        out.print("no budget windows")
        return
    for w in windows:
        out.print(
            f"{w['budget']}  from {w['window_start']}  limit ${w['limit_usd']}  "
            f"spent ${w['spent_usd']}  reserved ${w['reserved_usd']}  "
            f"remaining ${w['remaining_usd']}",
            highlight=False,
            markup=False,
        )


@budgets_app.command(name="raise")
def raise_budget(
    key: Annotated[str, typer.Argument(help="The window's budget, as `tether budgets` shows.")],
    by: Annotated[str, typer.Option("--by", help="US dollars to add to its current limit.")],
    raised_by: Annotated[
        str | None, typer.Option("--as", help="Who raises it (audited). Default: login name.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Raise a budget's current window; runs waiting on it continue (worker or resume)."""
    import getpass
    import os
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(by)
    except InvalidOperation:
        fail(f"--by must be an amount in US dollars, not {by!r}")
    who = raised_by or os.environ.get("TETHER_USER") or getpass.getuser()
    woken = execute(store, lambda runtime: runtime.raise_budget(key, by_usd=amount, raised_by=who))
    out.print(f"raised {key} by ${amount}", highlight=False, markup=False)
    for run_id in woken:
        out.print(
            f"run {run_id} is pending again: a worker continues it, or tether resume {run_id}",
            highlight=False,
            markup=False,
        )


def main() -> None:
    """Entry point of the ``tether`` console script."""
    app()
