"""Undo a run: run the compensations of its completed effects, newest first.

``await undo(runtime, run_id)`` (and ``tether undo RUN_ID``) looks at the run's journal
for calls that took effect (executed, not an error, not a repeat) of tools whose risk is
not ``read``, from the newest back to ``to_step``. Each one is:

- **undone** by its tool's ``compensate`` function (see :class:`~tether.tools.Compensation`);
- **irreversible** when the tool's risk is ``irreversible`` or it declares no
  ``compensate``: reported, never attempted;
- **failed** when the compensation raised: reported; running undo again retries it.

The undo is itself journaled, as a run of its own (agent ``undo:<run id>``): each
compensation is an intent committed before it runs and a result after, so an undo cut
short by a crash is finished by running undo again. Compensations that completed in an
earlier undo are not run again; one whose intent has no result (the crash hit it) runs
again, so compensations must be idempotent (they get a stable ``idempotency_key``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.errors import ConfigurationError, RunNotFoundError, RunStateError
from tether.events import (
    Event,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from tether.ids import new_run_id
from tether.loading import load_agent
from tether.run import AgentSpec
from tether.runtime import Tether
from tether.status import RunStatus
from tether.store import Lease
from tether.tools import Compensation, Risk, Tool, error_result

__all__ = ["UndoReport", "UndoStep", "undo"]

UNDO_AGENT_PREFIX = "undo:"
"""Undo runs are named ``undo:<run id>``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoStep:
    """What became of one effect of the run."""

    step: int
    """The step of the call in the undone run."""
    tool: str
    """The tool that made the call (the fallback tool, if one served)."""
    outcome: str
    """``undone``, ``irreversible`` or ``failed``."""
    message: str = ""
    """Why, for ``irreversible`` and ``failed``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoReport:
    """The result of :func:`undo`."""

    run_id: str
    """The undone run."""
    undo_run_id: str
    """The run that journals this undo."""
    steps: tuple[UndoStep, ...] = field(default=())
    """One entry per effect, newest first."""

    @property
    def complete(self) -> bool:
        """Whether every effect that can be undone was undone (none failed)."""
        return all(s.outcome != "failed" for s in self.steps)

    @property
    def irreversible(self) -> tuple[UndoStep, ...]:
        """The effects that could not be undone."""
        return tuple(s for s in self.steps if s.outcome == "irreversible")


async def undo(
    runtime: Tether,
    run_id: str,
    *,
    agent: AgentSpec[Any] | None = None,
    to_step: int = 1,
    user: str | None = None,
) -> UndoReport:
    """Compensate the effects of a finished run from its newest back to ``to_step``.

    Args:
        runtime: The runtime whose store holds the run.
        run_id: The run to undo.
        agent: The agent the run used (its tools carry the compensations). Default: loaded
            from the run's agent reference.
        to_step: The oldest step to undo. Default 1: everything.
        user: Who asks for the undo (journaled on the undo run).

    Raises:
        RunNotFoundError: No run has this id.
        RunStateError: The run has not finished (cancel it first).
        ConfigurationError: No ``agent`` and the run has no loadable reference.
    """
    record = await runtime.store.get_run(run_id)
    if record is None:
        raise RunNotFoundError(f"no run {run_id}")
    if record.finished_at is None:
        raise RunStateError(
            f"run {run_id} has not finished ({record.status.value}); cancel it before undoing"
        )
    if agent is None:
        if record.agent_ref is None:
            raise ConfigurationError(f"run {run_id} has no agent reference; pass agent=")
        agent = load_agent(record.agent_ref)
    journal = await runtime.store.events(run_id)
    effects = _effects(journal, _tools_of(agent), to_step)
    done = await _done_before(runtime, run_id)
    lease = await _begin(runtime, run_id, user)
    undo_run_id = lease.run_id
    reported: list[UndoStep] = []
    for number, (intent, finished, tool) in enumerate(effects, start=1):
        reported.append(await _compensate(runtime, lease, number, intent, finished, tool, done))
    failed = any(s.outcome == "failed" for s in reported)
    summary = RunFinished(
        run_id=undo_run_id,
        status=RunStatus.FAILED if failed else RunStatus.COMPLETED,
        output=json.dumps([_as_json(s) for s in reported]),
        error_class="compensation_failed" if failed else None,
        error_message="some compensations failed; run undo again to retry them" if failed else None,
        at=runtime.clock.now(),
    )
    await runtime.store.append([summary], lease, release=True)
    return UndoReport(run_id=run_id, undo_run_id=undo_run_id, steps=tuple(reported))


def _tools_of(agent: AgentSpec[Any]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    pending = list(agent.tools)
    while pending:
        tool = pending.pop()
        if tool.name not in tools:
            tools[tool.name] = tool
            pending.extend(tool.fallbacks)
    return tools


def _effects(
    journal: Sequence[Event], tools: dict[str, Tool], to_step: int
) -> list[tuple[ToolCallStarted, ToolCallFinished, Tool | None]]:
    """Calls of the run that took effect and may need undoing, newest first."""
    intents = {e.step: e for e in journal if isinstance(e, ToolCallStarted)}
    found: list[tuple[ToolCallStarted, ToolCallFinished, Tool | None]] = []
    for event in journal:
        if not isinstance(event, ToolCallFinished) or event.step < to_step:
            continue
        if not event.executed or event.is_error or event.repeated or event.step not in intents:
            continue
        tool = tools.get(event.tier or event.tool)
        if tool is not None and tool.risk is Risk.READ:
            continue
        found.append((intents[event.step], event, tool))
    return sorted(found, key=lambda item: item[1].step, reverse=True)


async def _done_before(runtime: Tether, run_id: str) -> set[int]:
    """Steps of ``run_id`` whose compensation completed in an earlier undo run.

    Earlier undo runs still marked running (their process died) are cancelled.
    """
    done: set[int] = set()
    for record in await runtime.store.list_runs(agent=UNDO_AGENT_PREFIX + run_id):
        journal = await runtime.store.events(record.run_id)
        for event in journal:
            if isinstance(event, ToolCallFinished) and not event.is_error:
                done.add(_original_step(event.call_id))
        if record.finished_at is None:
            await runtime.cancel(record.run_id, reason="superseded by a new undo")
    return done


async def _begin(runtime: Tether, run_id: str, user: str | None) -> Lease:
    started = RunStarted(
        run_id=new_run_id(),
        agent=UNDO_AGENT_PREFIX + run_id,
        task=f"undo {run_id}",
        user=user,
        at=runtime.clock.now(),
    )
    lease = await runtime.store.create_run(
        started, owner=runtime.owner, lease_for=runtime.lease_for
    )
    assert lease is not None  # created claimed because an owner was given
    return lease


async def _compensate(
    runtime: Tether,
    lease: Lease,
    number: int,
    intent: ToolCallStarted,
    finished: ToolCallFinished,
    tool: Tool | None,
    done: set[int],
) -> UndoStep:
    name = finished.tier or finished.tool
    step = finished.step
    if step in done:
        return UndoStep(step=step, tool=name, outcome="undone", message="in an earlier undo")
    if tool is None or tool.risk is Risk.IRREVERSIBLE or tool.compensate is None:
        why = (
            "the agent has no such tool now"
            if tool is None
            else "the tool is irreversible"
            if tool.risk is Risk.IRREVERSIBLE
            else "the tool declares no compensate function"
        )
        return UndoStep(step=step, tool=name, outcome="irreversible", message=why)
    key = f"{intent.idempotency_key}:undo"
    call_id = f"undo-{step}"
    started = ToolCallStarted(
        run_id=lease.run_id,
        step=number,
        call_id=call_id,
        tool=f"{name}.compensate",
        arguments={"step": step},
        idempotency_key=key,
        effect="idempotent",
        at=runtime.clock.now(),
    )
    await runtime.store.append([started], lease)
    compensation = Compensation(
        run_id=intent.run_id,
        step=step,
        arguments=dict(intent.arguments),
        result=_decoded(finished.content),
        idempotency_key=key,
    )
    try:
        outcome = tool.compensate(compensation)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        result = _result(lease, runtime, number, call_id, started.tool, message, failed=True)
        await runtime.store.append([result], lease)
        return UndoStep(step=step, tool=name, outcome="failed", message=message)
    result = _result(lease, runtime, number, call_id, started.tool, "undone", failed=False)
    await runtime.store.append([result], lease)
    return UndoStep(step=step, tool=name, outcome="undone")


def _result(
    lease: Lease,
    runtime: Tether,
    number: int,
    call_id: str,
    tool: str,
    message: str,
    *,
    failed: bool,
) -> ToolCallFinished:
    content = error_result("compensation_failed", message, tool=tool) if failed else message
    return ToolCallFinished(
        run_id=lease.run_id,
        step=number,
        call_id=call_id,
        tool=tool,
        content=content,
        is_error=failed,
        error_class="compensation_failed" if failed else None,
        executed=True,
        repeated=False,
        at=runtime.clock.now(),
    )


def _original_step(call_id: str) -> int:
    return int(call_id.removeprefix("undo-"))


def _decoded(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content


def _as_json(step: UndoStep) -> dict[str, Any]:
    return {"step": step.step, "tool": step.tool, "outcome": step.outcome, "message": step.message}
