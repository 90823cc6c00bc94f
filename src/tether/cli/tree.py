"""``tether show``: a run's journal drawn as a tree.

The run is the root. Each model response is a branch (its model, tokens, cost and the time
since the run's previous event); the calls it asked for hang under it (arguments, then
the result or its error class, with the fallback tier, a repeat, or a result reused from
another run), with their approvals, doubts and reviews. Limits, budget waits and the
ending close the tree. Text from the model and tools is one line, secrets redacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.markup import escape
from rich.tree import Tree

from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    BudgetRaised,
    ContextCompacted,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    OutputReviewed,
    ResponseRejected,
    ReviewDecided,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
)
from tether.redact import DEFAULT_REDACTOR
from tether.status import RunStatus

__all__ = ["run_tree"]

_TEXT = 70
"""Characters of model or tool text shown on one line."""


def run_tree(events: Sequence[Event]) -> Tree:
    """Draw a run's journal as a tree (the journal must start with ``run_started``)."""
    started = events[0]
    assert isinstance(started, RunStarted)
    root = Tree(
        f"[bold]{escape(started.agent)}[/] · {escape(_line(started.task))} · "
        f"user {escape(started.user or '-')} · {started.run_id}"
    )
    branch = root
    calls: dict[int, Tree] = {}
    previous: datetime = started.at
    for event in events[1:]:
        match event:
            case ModelResponded(step=step, response=response):
                branch = root.add(_model_line(event, previous))
                calls = {}
                for offset, call in enumerate(response.tool_calls, start=1):
                    arguments = escape(_line(call.arguments, 50))
                    calls[step + offset] = branch.add(
                        f"[dim]{step + offset:>3}[/] {escape(call.name)}({arguments})"
                    )
            case ModelFailed(step=step, error_class=error_class, message=message):
                branch = root.add(
                    f"[dim]{step:>3}[/] model [red]✗ {error_class}[/] {escape(_line(message))}"
                )
            case ToolCallFinished(step=step):
                calls.get(step, branch).add(_result_line(event))
            case _:
                _note(event, calls.get(getattr(event, "step", -1), branch), root)
        previous = event.at
    return root


def _model_line(event: ModelResponded, previous: datetime) -> str:
    response = event.response
    usage = response.usage
    cost = "?" if response.cost_usd is None else f"${response.cost_usd}"
    seconds = (event.at - previous).total_seconds()
    head = (
        f"[dim]{event.step:>3}[/] model [cyan]{escape(response.model_name)}[/] · "
        f"{usage.input_tokens}→{usage.output_tokens} tokens · {cost} · {seconds:.2f} s"
    )
    if response.attempts > 1:
        head += f" · {response.attempts} attempts"
    if response.degraded:
        head += " · [yellow]fallback[/]"
    if response.text and not response.tool_calls:
        head += f"\n    [green]answer[/] {escape(_line(response.text))}"
    return head


def _result_line(event: ToolCallFinished) -> str:
    if event.is_error:
        line = f"[red]✗ {event.error_class}[/]"
    else:
        line = f"[green]✓[/] {escape(_line(event.content))}"
    if event.tier is not None:
        line += f" [dim](served by {escape(event.tier)})[/]"
    if event.dedupe_of is not None:
        line += f" [dim](reused from {escape(event.dedupe_of)})[/]"
    if event.repeated:
        line += " [dim](repeat, not run again)[/]"
    return line


def _note(event: Event, under: Tree, root: Tree) -> None:
    """Add the events that are neither model calls nor results where they belong."""
    match event:
        case ApprovalRequested(approval_id=approval_id, reasons=reasons):
            why = escape(_line("; ".join(reasons), 60))
            under.add(f"[yellow]? waits for approval[/] {approval_id} ({why})")
        case ApprovalDecided(outcome=outcome, decided_by=who):
            colour = "green" if outcome == "approved" else "red"
            under.add(f"[{colour}]{outcome}[/] by {escape(who or '-')}")
        case ToolCallInDoubt():
            under.add("[yellow]? in doubt after a crash[/] (needs review)")
        case ReviewDecided(decision=decision, reviewer=reviewer):
            under.add(f"review: {decision} by {escape(reviewer or '-')}")
        case ResponseRejected(reason=reason):
            under.add(f"[yellow]rejected[/] {reason}")
        case OutputReviewed():
            _review(event, under)
        case _:
            _closing(event, root)


def _closing(event: Event, root: Tree) -> None:
    """Add the events that belong to the run as a whole: budget waits, limits, the end."""
    match event:
        case BudgetExhausted(budget=budget):
            root.add(f"[yellow]budget {escape(budget)} exhausted[/]: waiting for a raise")
        case BudgetRaised(budget=budget, raised_by=who):
            root.add(f"budget {escape(budget)} raised by {escape(who or '-')}")
        case LimitHit(limit=limit):
            root.add(f"[yellow]limit[/] {limit}")
        case ContextCompacted(step=step, folded=folded, tokens_before=was, tokens_after=now):
            root.add(
                f"[dim]context compacted before step {step}: {folded} messages summarised so far, "
                f"{was} → {now} tokens[/]"
            )
        case RunFinished(status=status, error_class=error_class):
            colour = "green" if status is RunStatus.COMPLETED else "red"
            why = f" ({error_class})" if error_class else ""
            root.add(f"[bold {colour}]{status.value}[/]{why}")
        case _:
            pass


def _review(event: OutputReviewed, under: Tree) -> None:
    if event.passed:
        under.add("[green]critic: passed[/]")
        return
    verdicts = under.add("[yellow]critic: revise[/]")
    for result in event.results:
        if not result.passed:
            problem = escape(_line(result.problem or ""))
            verdicts.add(f"[red]✗ {escape(result.check)}[/] {problem}")


def _line(text: str, limit: int = _TEXT) -> str:
    flat = " ".join(DEFAULT_REDACTOR.redact_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
