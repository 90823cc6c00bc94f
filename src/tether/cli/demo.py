"""``tether demo``: two minutes of what tether does, on the local model, offline.

An operations assistant (:mod:`tether.demo`) is asked to delete a file in a fresh
workspace. The live timeline shows each step; the deletion stops for approval (asked at
the terminal, or given by ``--yes``); the limits and the budget are shown up front; the
run ends with a typed status, what tether caught, where the journal is, and the commands
to try next. Exit code 0 whenever the run ends in a typed status, however the small model
behaves; 2 for usage errors and 70 when tether itself fails, as every command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tether import demo as scenario
from tether.agent import Agent
from tether.cli.approvals import call_arguments
from tether.cli.common import StoreOption, execute, journal_location, out
from tether.cli.timeline import Timeline, print_summary
from tether.governance.budgets import Budget
from tether.models import FREE
from tether.run import RunResult
from tether.runtime import Tether
from tether.status import RunStatus

__all__ = ["register"]

MAX_ROUNDS = 4
"""How many times the run is continued after approvals (one pause per round)."""


def register(app: typer.Typer) -> None:
    """Add ``tether demo`` to ``app``."""
    app.command()(demo)


def demo(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Approve the deletion without asking.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Watch an assistant work on the local model: approvals, limits, budget, undo."""
    root = scenario.workspace_path()
    scenario.prepare_workspace(root)
    agent = scenario.build_agent(root)
    _introduce(agent, root)
    timeline = Timeline(out)

    async def act(runtime: Tether) -> tuple[RunResult[Any], str | None]:
        governed = Tether(
            store=runtime.store,
            subscribers=(timeline,),
            budgets=[Budget.per_run(scenario.BUDGET_USD)],
            prices={agent.model.name: FREE},  # type: ignore[union-attr]
        )
        result = await governed.run(
            agent, scenario.TASK, user="demo", agent_ref="tether.demo:agent"
        )
        for _ in range(MAX_ROUNDS):
            if result.status is not RunStatus.WAITING_APPROVAL:
                break
            await _answer(governed, result.run_id, yes)
            result = await governed.resume(result.run_id, agent=agent)
        return result, journal_location(runtime.store)

    result, journal = execute(store, act)
    print_summary(out, result, caught=timeline.caught, journal=journal)
    out.print(
        f"[dim]undo it: tether undo {result.run_id} (the deleted file comes back from the "
        "trash) · check the audit log: tether audit verify[/]",
        highlight=False,
    )


async def _answer(runtime: Tether, run_id: str, yes: bool) -> None:
    """Approve (``--yes``, or a "y" at the terminal) or deny each call the run waits for."""
    for request in await runtime.pending_approvals():
        if request.run_id != run_id:
            continue
        shown = f"{request.tool}({await call_arguments(runtime, request) or ''})"
        if yes:
            out.print(f"[yellow]approval[/] {escape(shown)}: approved (--yes)", highlight=False)
            approved = True
        elif sys.stdin.isatty():
            approved = typer.confirm(f"approve {shown}?", default=False)
        else:
            out.print(
                f"[yellow]approval[/] {escape(shown)}: no terminal to ask, denied (use --yes)",
                highlight=False,
            )
            approved = False
        if approved:
            await runtime.approve(request.approval_id, approver="demo", comment="tether demo")
        else:
            await runtime.deny(request.approval_id, approver="demo", reason="declined in the demo")


def _context_line(agent: Agent[Any]) -> list[str]:
    policy = agent.context
    if policy is None:
        return []
    return [
        f"context    at most {policy.max_tokens} tokens per request (the model's own count) · "
        f"older turns summarised · tool outputs over {policy.max_tool_output_chars} "
        "characters shown cut"
    ]


def _introduce(agent: Agent[Any], root: Path) -> None:
    limits = agent.limits
    seconds = 0 if limits.max_duration is None else int(limits.max_duration.total_seconds())
    lines = [
        "[bold]tether demo[/] · an operations assistant on the local model, offline",
        f"workspace  {escape(str(root))}  ({escape(', '.join(sorted(scenario.FILES)))})",
        f"limits     {limits.max_steps} steps · {limits.max_tool_calls} tool calls · "
        f"{seconds} s · a call repeated more than {limits.max_repeats}× ends the run",
        f"budget     ${scenario.BUDGET_USD} per run (the local model costs $0) · "
        "deleting a file waits for approval",
        *_context_line(agent),
        f"task       {escape(scenario.TASK)}",
        "",
    ]
    for line in lines:
        out.print(line, highlight=False)
