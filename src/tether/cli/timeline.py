"""Render run events as a compact, human-readable timeline on a rich console."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from tether.events import (
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    ResponseRejected,
    ReviewDecided,
    RunFinished,
    ToolCallFinished,
    ToolCallInDoubt,
)
from tether.run import RunResult
from tether.status import RunStatus

__all__ = ["Timeline", "print_summary"]

_PREVIEW_CHARS = 100


class Timeline:
    """An event subscriber that prints one line per step as the run goes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: Event) -> None:
        """Print the line for ``event`` (events without a line are skipped)."""
        line = _line(event)
        if line is not None:
            self.console.print(line, highlight=False)


def _line(event: Event) -> str | None:
    match event:
        case ModelResponded(step=step, response=response):
            if response.tool_calls:
                calls = ", ".join(
                    f"{c.name}({_preview(c.arguments, 40)})" for c in response.tool_calls
                )
                return f"[dim]{step:>4}[/] model   → {escape(calls)}"
            answer = escape(_preview(response.text or ""))
            return f"[dim]{step:>4}[/] model   [green]answer[/] {answer}"
        case ToolCallFinished(step=step, tool=tool, content=content, is_error=is_error):
            mark = "[red]✗[/]" if is_error else "[green]✓[/]"
            note = " [dim](repeat)[/]" if event.repeated else ""
            return (
                f"[dim]{step:>4}[/] tool    {mark} {escape(tool)}{note} {escape(_preview(content))}"
            )
        case ModelFailed(step=step, error_class=error_class, message=message):
            return f"[dim]{step:>4}[/] model   [red]✗ {error_class}[/] {escape(_preview(message))}"
        case ResponseRejected(reason=reason):
            return f"[dim]   ·[/] [yellow]rejected[/] {reason}"
        case LimitHit(limit=limit):
            return f"[dim]   ·[/] [yellow]limit[/] {limit}"
        case ToolCallInDoubt(step=step, tool=tool):
            return f"[dim]{step:>4}[/] tool    [yellow]? {escape(tool)} in doubt[/] (needs review)"
        case ReviewDecided(step=step, decision=decision, reviewer=reviewer):
            return f"[dim]{step:>4}[/] review  {decision} by {escape(reviewer or 'unknown')}"
        case RunFinished():
            return None
        case _:
            return None


def print_summary(console: Console, result: RunResult[object]) -> None:
    """Print the status, output, error, tokens and cost of a finished run."""
    colour = "green" if result.status is RunStatus.COMPLETED else "red"
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd}"
    console.print(
        f"[bold {colour}]{result.status.value}[/] · {result.steps} steps · "
        f"{result.tool_calls} tool calls · {result.usage.total_tokens} tokens · {cost}",
        highlight=False,
    )
    console.print(f"[dim]run {result.run_id}[/]", highlight=False)
    if result.error is not None:
        console.print(
            f"[red]{result.error.error_class}[/]: {escape(result.error.message)}", highlight=False
        )
    if result.output is not None:
        console.print(escape(str(result.output)), highlight=False)


def _preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
