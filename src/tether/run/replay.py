"""What a journal already says, so a resumed run re-runs nothing that was recorded.

A resumed run executes the same loop from the start. Every model call, tool result and
event is first looked up here by step: a recorded one is used (and not written again),
and only what is missing runs live. Because the loop is deterministic given the recorded
responses and results, the rebuilt state equals the state before the crash. An event the
code produces that contradicts the journal raises
:class:`~tether.errors.ReplayDivergedError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether.errors import ReplayDivergedError
from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    BudgetRaised,
    CheckpointTaken,
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
    ToolCallStarted,
)

__all__ = ["Replay"]


class Replay:
    """An index of a run's journal by step, and which entries the loop has matched."""

    def __init__(self, journal: Sequence[Event], *, read_only: bool = False) -> None:
        """Index ``journal``; with ``read_only``, anything not recorded is refused."""
        self.read_only = read_only
        if not journal or not isinstance(journal[0], RunStarted):
            raise ReplayDivergedError("a journal must start with run_started")
        self.started: RunStarted = journal[0]
        self.models: dict[int, ModelResponded | ModelFailed] = {}
        self.intents: dict[int, ToolCallStarted] = {}
        self.results: dict[int, ToolCallFinished] = {}
        self.in_doubt: dict[int, ToolCallInDoubt] = {}
        self.decisions: dict[int, ReviewDecided] = {}
        self.approval_requests: dict[int, ApprovalRequested] = {}
        self.approval_decisions: dict[int, ApprovalDecided] = {}
        self.compactions: dict[int, ContextCompacted] = {}
        """Context compactions, by the step whose request they shaped."""
        self.budget_waits: dict[int, list[BudgetExhausted | BudgetRaised]] = {}
        """Per model step, the waits for a raised budget and the raises, in order."""
        self.finished: RunFinished | None = None
        self._keys: set[tuple[str, int | str]] = set()
        for event in journal[1:]:
            self._index(event)
        self._unmatched = set(self._keys)
        self.paused_s = _paused_s(self)
        """Seconds the run spent waiting for people (approvals, reviews, budget raises),
        overlaps merged; they do not count towards ``max_duration``."""

    @property
    def replaying(self) -> bool:
        """Whether recorded events remain that the loop has not reached yet."""
        return bool(self._unmatched)

    def recorded(self, event: Event) -> bool:
        """Whether ``event`` is already in the journal (then it must not be written again).

        Raises:
            ReplayDivergedError: The loop produced a new event while recorded ones are
                still unmatched: the code no longer does what the journal says it did.
        """
        if not self._keys and not self.read_only:
            return False  # a new run: nothing is recorded beyond run_started
        key = _key(event)
        if key is not None and key in self._keys:
            self._unmatched.discard(key)
            return True
        if self.read_only:
            raise ReplayDivergedError(
                f"run {self.started.run_id}: replaying produced {event.kind} at "
                f"{getattr(event, 'step', '-')}, which the journal does not hold"
            )
        if self._unmatched:
            pending = ", ".join(f"{kind}@{ref}" for kind, ref in sorted(self._unmatched, key=str))
            raise ReplayDivergedError(
                f"run {self.started.run_id}: the code produced {event.kind} at "
                f"{getattr(event, 'step', '-')} but the journal still holds {pending}"
            )
        return False

    def forbid_live(self, what: str) -> None:
        """Raise if this is a read-only replay: ``what`` would have to run live."""
        if self.read_only:
            raise ReplayDivergedError(
                f"run {self.started.run_id}: replaying would {what}; the journal does not record it"
            )

    def consume_all(self) -> None:
        """Stop matching: what follows is written regardless of what is recorded."""
        self._unmatched.clear()

    def consume(self, *events: Event) -> None:
        """Mark journal entries the loop used without producing them again."""
        for event in events:
            key = _key(event)
            if key is not None:
                self._unmatched.discard(key)

    def _index(self, event: Event) -> None:
        key = _key(event)
        if key is None:
            return
        if key in self._keys:
            raise ReplayDivergedError(f"run {event.run_id}: {key} appears twice in the journal")
        self._keys.add(key)
        by_step = _BY_STEP.get(type(event))
        if by_step is not None:
            getattr(self, by_step)[event.step] = event  # type: ignore[union-attr]
        elif isinstance(event, BudgetExhausted | BudgetRaised):
            self.budget_waits.setdefault(event.step, []).append(event)
        elif isinstance(event, RunFinished):
            self.finished = event


_BY_STEP: dict[type, str] = {
    ModelResponded: "models",
    ModelFailed: "models",
    ToolCallStarted: "intents",
    ToolCallFinished: "results",
    ToolCallInDoubt: "in_doubt",
    ReviewDecided: "decisions",
    ApprovalRequested: "approval_requests",
    ApprovalDecided: "approval_decisions",
    ContextCompacted: "compactions",
}
"""Which index of :class:`Replay` holds each kind of event, by step."""


def _key(event: Event) -> tuple[str, int | str] | None:
    match event:
        case RunStarted():
            return None
        case ResponseRejected():
            return (event.kind, f"{event.step}:{event.reason}")
        case BudgetExhausted() | BudgetRaised():
            return (event.kind, f"{event.step}:{event.attempt}")
        case LimitHit() | RunFinished():
            return (event.kind, 0)
        case (
            ModelResponded()
            | ModelFailed()
            | CheckpointTaken()
            | ToolCallStarted()
            | ToolCallFinished()
            | ToolCallInDoubt()
            | ReviewDecided()
            | ApprovalRequested()
            | ApprovalDecided()
            | OutputReviewed()
            | ContextCompacted()
        ):
            return (event.kind, event.step)


def _paused_s(replay: Replay) -> float:
    """Total length of the recorded waits for people: request to answer, merged."""
    spans = [
        (asked.at, answer.at)
        for waits, answers in (
            (replay.approval_requests, replay.approval_decisions),
            (replay.in_doubt, replay.decisions),
        )
        for step, asked in waits.items()
        if (answer := answers.get(step)) is not None and answer.at > asked.at
    ]
    for events in replay.budget_waits.values():
        asked_at = {e.attempt: e.at for e in events if isinstance(e, BudgetExhausted)}
        spans.extend(
            (asked_at[e.attempt], e.at)
            for e in events
            if isinstance(e, BudgetRaised) and e.attempt in asked_at and e.at > asked_at[e.attempt]
        )
    total, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += (end - start).total_seconds()
            reach = end if reach is None or end > reach else reach
    return total
