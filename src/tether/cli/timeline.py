"""Render run events as a compact, human-readable timeline on a rich console."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape

from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    CheckpointTaken,
    ContextCompacted,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    OutputReviewed,
    ResponseRejected,
    ReviewDecided,
    ToolCallFinished,
    ToolCallInDoubt,
)
from tether.redact import DEFAULT_REDACTOR
from tether.run import RunResult
from tether.status import RunStatus

__all__ = ["Timeline", "print_summary"]

_PREVIEW_CHARS = 100


_CAUGHT = {
    "arguments_too_large": "oversized arguments",
    "unknown_tool": "calls to unknown tools",
    "malformed_arguments": "malformed arguments",
    "invalid_arguments": "invalid arguments",
    "invalid_result": "invalid tool results",
    "tool_error": "tool errors",
    "tool_timeout": "tool timeouts",
    "permission_denied": "calls without permission",
    "approval_denied": "calls a person denied",
    "approval_expired": "calls nobody approved in time",
}


class Timeline:
    """An event subscriber that prints one line per step as the run goes.

    It also counts what tether caught on the way (bad calls, repeats, rejected responses,
    retried or failed-over model requests, limits), for :func:`print_summary`.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.caught: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        """Print the line for ``event`` (events without a line are skipped)."""
        self._count(event)
        line = _line(event)
        if line is not None:
            self.console.print(line, highlight=False)

    def _count(self, event: Event) -> None:
        match event:
            case ToolCallFinished(error_class=error_class, repeated=repeated, tier=tier):
                if tier is not None:
                    self.caught["results from a fallback tool"] += 1
                if event.dedupe_of is not None:
                    self.caught["calls answered from another run"] += 1
                if repeated:
                    self.caught["repeated calls"] += 1
                elif error_class in _CAUGHT:
                    self.caught[_CAUGHT[error_class]] += 1
            case ModelResponded(response=response):
                if response.attempts > 1:
                    self.caught["retried model requests"] += response.attempts - 1
                if response.degraded:
                    self.caught["responses from a fallback model"] += 1
            case ResponseRejected(reason=reason):
                self.caught[f"rejected responses ({reason})"] += 1
            case LimitHit(limit=limit):
                self.caught[f"limit {limit}"] += 1
            case ApprovalRequested():
                self.caught["calls held for approval"] += 1
            case _:
                pass


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
            note = _result_note(event)
            return (
                f"[dim]{step:>4}[/] tool    {mark} {escape(tool)}{note} {escape(_preview(content))}"
            )
        case ModelFailed(step=step, error_class=error_class, message=message):
            return f"[dim]{step:>4}[/] model   [red]✗ {error_class}[/] {escape(_preview(message))}"
        case ResponseRejected(reason=reason):
            return f"[dim]   ·[/] [yellow]rejected[/] {reason}"
        case LimitHit(limit=limit):
            return f"[dim]   ·[/] [yellow]limit[/] {limit}"
        case CheckpointTaken(step=step, tool=tool, risk=risk):
            return f"[dim]{step:>4} checkpoint before {escape(tool)} ({risk})[/]"
        case ToolCallInDoubt(step=step, tool=tool):
            return f"[dim]{step:>4}[/] tool    [yellow]? {escape(tool)} in doubt[/] (needs review)"
        case ReviewDecided(step=step, decision=decision, reviewer=reviewer):
            return f"[dim]{step:>4}[/] review  {decision} by {escape(reviewer or 'unknown')}"
        case _:
            return _approval_line(event)


def _approval_line(event: Event) -> str | None:
    match event:
        case ApprovalRequested(step=step, tool=tool, approval_id=approval_id, reasons=reasons):
            why = escape(_preview("; ".join(reasons)))
            return (
                f"[dim]{step:>4}[/] approve [yellow]? {escape(tool)} waits for a person[/] "
                f"({why}) · tether approve {approval_id}"
            )
        case OutputReviewed(step=step, passed=passed, results=results):
            if passed:
                return f"[dim]{step:>4}[/] critic  [green]passed[/] ({len(results)} checks)"
            failed = ", ".join(r.check for r in results if not r.passed)
            return f"[dim]{step:>4}[/] critic  [yellow]revise[/] {escape(failed)}"
        case ContextCompacted(step=step, folded=folded, tokens_before=was, tokens_after=now):
            summarised = f"{folded} messages summarised so far"
            return f"[dim]{step:>4} context {summarised}, {was} → {now} tokens[/]"
        case ApprovalDecided(step=step, outcome=outcome, decided_by=decided_by):
            colour = "green" if outcome == "approved" else "red"
            who = f" by {escape(decided_by)}" if decided_by else ""
            return f"[dim]{step:>4}[/] approve [{colour}]{outcome}[/]{who}"
        case _:
            return None


def print_summary(
    console: Console,
    result: RunResult[object],
    *,
    caught: Counter[str] | None = None,
    journal: str | None = None,
) -> None:
    """Print the status, output, error, tokens and cost of a finished run.

    Args:
        console: Where to print.
        result: The run's result.
        caught: What tether caught during the run (see :class:`Timeline`), if known.
        journal: Where the journal is kept, to print it with the commands to try next.
            Default: not printed.
    """
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
    if caught:
        found = ", ".join(f"{count} {what}" for what, count in caught.most_common())
        console.print(f"[yellow]tether caught[/]: {escape(found)}", highlight=False)
    if journal is not None:
        console.print(f"[dim]journal: {escape(journal)}[/]", highlight=False)
        console.print(
            f"[dim]next: tether show {result.run_id} · tether resume {result.run_id}[/]",
            highlight=False,
        )


def _result_note(event: ToolCallFinished) -> str:
    """Why a result is special: a repeat, reused from another run, or from a fallback."""
    if event.dedupe_of is not None:
        return f" [dim](reused from {escape(event.dedupe_of)})[/]"
    if event.tier is not None:
        return f" [dim](served by {escape(event.tier)})[/]"
    return " [dim](repeat)[/]" if event.repeated else ""


def _preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    """One line of ``text``, secrets redacted, cut at ``limit`` characters."""
    flat = " ".join(DEFAULT_REDACTOR.redact_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
