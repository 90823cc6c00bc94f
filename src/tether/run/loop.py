"""The bounded run loop.

::

    start ──> check limits ──> ask model ──> check usage ──┬─> tool calls ──> results ──┐
                  ^                                        └─> final text ──> validate ─┤
                  └──────────────── not finished (feedback or results added) <──────────┘

Every path ends in :meth:`Run.finish`, which writes exactly one ``RunFinished`` event
(or, for a call in doubt, pauses the run in ``needs_review``) and returns a
:class:`~tether.run.outcome.RunResult`. Expected endings never raise.

The same loop runs a new run and resumes an interrupted one: model responses and tool
results already in the journal are replayed (see :mod:`tether.run.replay`), never
requested or executed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError

from tether.clock import Clock
from tether.context import ContextPolicy, ContextWindow, ModelSummarizer
from tether.critic import Critic
from tether.critic import feedback as critique_feedback
from tether.errors import ConfigurationError, ModelError, ReplayDivergedError, TetherError
from tether.events import (
    BudgetExhausted,
    ContextCompacted,
    LimitHit,
    ModelFailed,
    ModelResponded,
    OutputReviewed,
    ResponseRejected,
    RunFinished,
    ToolCallFinished,
    ToolCallInDoubt,
)
from tether.failpoints import failpoint
from tether.governance.approvals import ApprovalPolicy, Approvals
from tether.governance.budgets import Budgets, Denied
from tether.messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from tether.models import Model, ModelSettings, resolve_model
from tether.run import limits as check
from tether.run.calls import CallRecord, run_calls, settle_repeats
from tether.run.effects import DurableCalls, unknown_outcome
from tether.run.journal import Journal
from tether.run.outcome import OutputT, RunError, RunResult
from tether.run.state import RunState
from tether.settings import RunLimits
from tether.status import RunStatus
from tether.tools import Tool, ToolOutcome, error_result

__all__ = ["AgentSpec", "BudgetExhaustedAction", "InDoubt", "Run"]

logger = logging.getLogger("tether")

_WRAP_UP_STATUSES = frozenset({RunStatus.MAX_STEPS, RunStatus.TOOL_CALL_LIMIT})
_WRAP_UP_PROMPT = (
    "A limit of this run was reached, so no more tools can be used. "
    "Give your best final answer now from what you have."
)


@runtime_checkable
class AgentSpec(Protocol[OutputT]):
    """What the loop needs from an agent definition (``tether.Agent`` provides it)."""

    @property
    def name(self) -> str:
        """Agent name."""
        ...

    @property
    def model(self) -> Model | str:
        """Model that answers, or its name for :func:`~tether.models.resolve_model`."""
        ...

    @property
    def instructions(self) -> str:
        """System prompt."""
        ...

    @property
    def tools(self) -> Sequence[Tool]:
        """Tools the model may call."""
        ...

    @property
    def limits(self) -> RunLimits:
        """Caps of each run."""
        ...

    @property
    def model_settings(self) -> ModelSettings:
        """Settings sent with every model request."""
        ...

    @property
    def output_adapter(self) -> TypeAdapter[OutputT] | None:
        """Validator of the final output, or ``None`` for plain text."""
        ...

    @property
    def approvals(self) -> ApprovalPolicy | None:
        """Which tool calls wait for a person's approval, or ``None`` for none."""
        ...

    @property
    def critic(self) -> Critic | None:
        """Checks a final answer must pass, or ``None`` for none."""
        ...

    @property
    def context(self) -> ContextPolicy | None:
        """What the model sees of the conversation, or ``None`` for all of it."""
        ...


BudgetExhaustedAction = Literal["end", "wait"]
"""What a run does when a budget refuses its next model call.

``"end"``: it ends ``budget_exceeded`` with its partial result. ``"wait"``: it pauses in
``waiting_approval`` until a person raises the budget (``tether budgets raise``), then
asks again.
"""

InDoubt = Literal["wait", "end"]
"""What a run does when an ``at_most_once`` call is in doubt after a crash.

``"wait"``: the run pauses in ``needs_review`` until a person decides (``tether review``),
then continues. ``"end"``: the run ends ``needs_review`` for good; the call's result says
its outcome is unknown, and a person reconciles it outside tether.
"""


class _BudgetRefused(Exception):
    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget
        self.message = message


@dataclass(frozen=True, slots=True)
class _Ending:
    status: RunStatus
    error: RunError | None = None
    limit: str | None = None
    output: Any = None
    paused: bool = False
    """The run stops without a terminal event (in doubt, or released to another worker)."""


class Run(Generic[OutputT]):
    """One execution of an agent on a task, new or resumed from its journal.

    Create it with the run's :class:`~tether.run.journal.Journal` (which holds the lease
    and what is already recorded), then ``await run.execute()`` once.

    Args:
        agent: The agent definition.
        journal: The journal writer of this run.
        clock: The source of time.
        should_stop: Asked before each live model call; ``True`` stops the run where it
            stands (nothing lost) so another worker can continue it. Default: never.
        budgets: Money budgets that reserve each live model call's worst case before it
            starts and settle its cost after; a refusal ends the run ``budget_exceeded``.
            Default: none (no work per call).
        approvals: Where approval requests are kept; required when the agent has an
            approval policy. Default none.
        budget_exhausted: ``"end"`` (default) or ``"wait"``; see
            :data:`BudgetExhaustedAction`.

    Raises:
        ConfigurationError: The agent has an approval policy and ``approvals`` is ``None``.
    """

    def __init__(
        self,
        agent: AgentSpec[OutputT],
        journal: Journal,
        *,
        clock: Clock,
        should_stop: Callable[[], bool] | None = None,
        in_doubt: InDoubt = "wait",
        budgets: Budgets | None = None,
        approvals: Approvals | None = None,
        budget_exhausted: BudgetExhaustedAction = "end",
    ) -> None:
        started = journal.replay.started
        self.budget_exhausted = budget_exhausted
        policy = agent.approvals
        if policy is not None and approvals is None:
            raise ConfigurationError(
                f"agent {agent.name!r} asks people to approve calls, but its store "
                f"{type(journal.store).__name__} keeps no approval requests"
            )
        self.budgets = budgets
        self.in_doubt = in_doubt
        self.agent = agent
        self.model = resolve_model(agent.model)
        self.journal = journal
        self.replay = journal.replay
        self.task = started.task
        self.limits = agent.limits
        self.clock = clock
        self.should_stop = should_stop
        self.tools = {t.name: t for t in agent.tools}
        self.tool_definitions = tuple(t.definition for t in agent.tools)
        self.state = RunState(
            run_id=started.run_id, agent=started.agent, user=started.user, started_at=started.at
        )
        self.calls = DurableCalls(
            journal=journal,
            state=self.state,
            limits=self.limits,
            clock=clock,
            approval_policy=policy,
            approvals=approvals,
        )
        self._batch: list[CallRecord] = []
        """Records of the batch being executed, until they are all recorded."""
        self.context = None if agent.context is None else self._context_window(agent.context)

    async def execute(self) -> RunResult[OutputT]:
        """Run (or resume) the loop to its end and return the result."""
        state = self.state
        system = self._system_prompt()
        if system:
            state.messages.append(SystemMessage(content=system))
        state.messages.append(UserMessage(content=self.task))
        # The clock is checked before each model call; this real-time deadline is the
        # backstop that interrupts a model or tool that never returns.
        deadline = asyncio.timeout(self._remaining_s())
        try:
            async with deadline:
                ending = await self._loop()
        except TimeoutError:
            if not deadline.expired():
                raise
            ending = _failure(
                RunStatus.TIMED_OUT,
                "max_duration",
                "the run's max_duration passed while a model or tool call was in flight",
                "max_duration",
            )
            await self._answer_interrupted()
        return await self.finish(ending)

    async def _loop(self) -> _Ending:
        state = self.state
        while True:
            replaying = (state.steps + 1) in self.replay.models
            breach = check.before_model_call(
                self.limits,
                steps=state.steps,
                elapsed_s=0.0 if replaying else self._elapsed_s(),
                usage=state.usage,
                cost_usd=state.cost_usd,
            )
            if breach is not None:
                return _limit_ending(breach)
            if not replaying and self.should_stop is not None and self.should_stop():
                return _Ending(RunStatus.PENDING, paused=True)
            response = await self.ask_model(self.tool_definitions)
            if isinstance(response, _Ending):
                return response
            breach = check.after_model_call(self.limits, usage=state.usage, cost_usd=state.cost_usd)
            if breach is not None:
                state.messages.append(
                    AssistantMessage(text=response.text, tool_calls=response.tool_calls)
                )
                self._answer_unexecuted(response.tool_calls, breach.message)
                return _limit_ending(breach)
            if response.tool_calls:
                ending = await self.act(response)
            else:
                ending = await self.accept_final(response)
            if ending is not None:
                return ending

    async def ask_model(self, tools: Sequence[ToolDefinition]) -> ModelResponse | _Ending:
        """Request one response (or replay the recorded one); a failure becomes an ending."""
        state = self.state
        step = state.steps + 1
        waits = self.replay.budget_waits.get(step, ())
        self.replay.consume(*waits)
        recorded = self.replay.models.get(step)
        compaction = self.replay.compactions.get(step)
        if compaction is not None:
            self._restore_context(compaction)
        if isinstance(recorded, ModelFailed):
            self.journal.emit(recorded)
            return _failure(RunStatus.FAILED, recorded.error_class, recorded.message)
        if recorded is not None:
            response = recorded.response
        else:
            if step in self.replay.intents or step in self.replay.results:
                raise ReplayDivergedError(
                    f"run {state.run_id}: step {step} is a tool call in the journal, "
                    "but the code asks the model"
                )
            self.replay.forbid_live(f"call the model for step {step}")
            if compaction is None:
                await self._compact_context(step, tools)
            await self.journal.flush()
            failpoint("after_result_before_next")
            try:
                response = await self._request(tools)
            except _BudgetRefused as refused:
                attempt = 1 + sum(isinstance(e, BudgetExhausted) for e in waits)
                return self._budget_refused(step, attempt, refused)
            except Exception as exc:
                return self._model_failed(step, exc)
        state.steps = step
        state.charge(response.usage, response.cost_usd)
        state.degraded = state.degraded or response.degraded
        if response.text:
            state.last_text = response.text
        self.journal.emit(
            ModelResponded(run_id=state.run_id, step=step, response=response, at=self.clock.now())
        )
        return response

    async def act(self, response: ModelResponse) -> _Ending | None:
        """Run the response's tool calls and add their results to the conversation."""
        state, calls = self.state, response.tool_calls
        if len({c.id for c in calls}) != len(calls):
            duplicates = sorted(i for i, n in Counter(c.id for c in calls).items() if n > 1)
            message = (
                f"Tool call ids must be unique within one response; repeated: {duplicates}. "
                "No tool was run. Send the calls again, each with its own id."
            )
            self.reject("duplicate_call_ids", message)
            state.consecutive_errors += 1
            return self._error_ending()
        state.messages.append(AssistantMessage(text=response.text, tool_calls=calls))
        breach = check.before_tool_calls(
            self.limits, steps=state.steps, tool_calls=state.tool_calls, requested=len(calls)
        )
        if breach is not None:
            self._answer_unexecuted(calls, breach.message)
            return _limit_ending(breach)
        records = self._batch = []
        self.calls.waiting_for.clear()
        self.calls.confidence = response.confidence
        await run_calls(
            calls,
            tools=self.tools,
            state=state,
            limits=self.limits,
            hooks=self.calls,
            records=records,
        )
        doubted = [r for r in records if r.in_doubt]
        for record in records:
            if record.finished:
                self._record_result(record)
        self._batch = []
        if doubted:
            return self._pause_in_doubt(doubted)
        if self.calls.waiting_for:
            return self._pause_for_approval(self.calls.waiting_for)
        return self._loop_ending(records) or self._error_ending()

    async def accept_final(self, response: ModelResponse) -> _Ending | None:
        """Validate a final answer; invalid output gets feedback and a bounded retry."""
        text = response.text or ""
        adapter = self.agent.output_adapter
        problem: str | None = None
        output: Any = text
        if not text.strip():
            problem = "The response was empty. Reply with your final answer."
        elif adapter is not None:
            try:
                output = adapter.validate_json(text)
            except ValidationError as exc:
                problem = _output_feedback(exc)
        self.state.messages.append(AssistantMessage(text=response.text))
        if problem is None:
            return self._critique(output)
        self.reject("output_invalid", problem)
        if self.state.output_retries >= self.limits.max_output_retries:
            return _failure(RunStatus.FAILED, "output_invalid", problem)
        self.state.output_retries += 1
        return None

    def _critique(self, output: Any) -> _Ending | None:
        """Let the critic check a valid answer: accept it, ask for a revision, or stop."""
        critic, state = self.agent.critic, self.state
        if critic is None:
            return _Ending(RunStatus.COMPLETED, output=output)
        results = critic.review(output)
        passed = all(r.passed for r in results)
        self.journal.emit(
            OutputReviewed(
                run_id=state.run_id,
                step=state.steps,
                passed=passed,
                results=results,
                at=self.clock.now(),
            )
        )
        if passed:
            return _Ending(RunStatus.COMPLETED, output=output)
        if state.critic_revisions >= critic.max_revisions:
            failed = ", ".join(r.check for r in results if not r.passed)
            message = (
                f"the final answer still fails {failed} after {state.critic_revisions} "
                "revision(s); a person must look at it"
            )
            return _failure(RunStatus.NEEDS_REVIEW, "critic_rejected", message)
        state.critic_revisions += 1
        state.messages.append(UserMessage(content=critique_feedback(results)))
        return None

    def reject(self, reason: str, message: str) -> None:
        """Record that the last response was refused and tell the model why."""
        state = self.state
        self.journal.emit(
            ResponseRejected(
                run_id=state.run_id,
                step=state.steps,
                reason=reason,
                message=message,
                at=self.clock.now(),
            )
        )
        state.messages.append(UserMessage(content=message))

    async def finish(self, ending: _Ending) -> RunResult[OutputT]:
        """Write the one terminal event (unless the run pauses) and build the result."""
        state = self.state
        output = ending.output
        if ending.limit is not None:
            self.journal.emit(
                LimitHit(
                    run_id=state.run_id,
                    limit=ending.limit,
                    status=ending.status,
                    at=self.clock.now(),
                )
            )
            output = await self._wrap_up(ending)
        if output is None and ending.status is not RunStatus.COMPLETED:
            output = state.last_text if self.agent.output_adapter is None else None
        recorded = self.replay.finished
        finished_at = self.clock.now() if recorded is None else recorded.at
        error = ending.error
        if not ending.paused:
            failpoint("before_terminal_write")
            self.journal.emit(
                RunFinished(
                    run_id=state.run_id,
                    status=ending.status,
                    output=None if output is None else _output_text(output),
                    error_class=None if error is None else error.error_class,
                    error_message=None if error is None else error.message,
                    at=finished_at,
                )
            )
        await self.journal.flush(release=not self.replay.read_only)
        return RunResult(
            run_id=state.run_id,
            agent=state.agent,
            status=ending.status,
            output=output,
            error=error,
            steps=state.steps,
            tool_calls=state.tool_calls,
            usage=state.usage,
            cost_usd=state.cost_usd,
            degraded=state.degraded,
            started_at=state.started_at,
            finished_at=finished_at,
            messages=tuple(state.messages),
        )

    def _request_messages(self) -> list[Message]:
        """What the next request carries: the context window, or the whole conversation."""
        if self.context is None:
            return self.state.messages
        return self.context.view(self.state.messages)

    async def _compact_context(self, step: int, tools: Sequence[ToolDefinition]) -> None:
        """Fold the oldest turns into the summary if the next request is over budget."""
        if self.context is None:
            return
        state = self.state
        compaction = await self.context.compact(
            state.messages, tools, run_id=state.run_id, step=step, at=self.clock.now()
        )
        if compaction is None:
            return
        state.charge(compaction.usage, compaction.cost_usd)
        self.journal.emit(compaction)

    def _restore_context(self, compaction: ContextCompacted) -> None:
        """Apply a journaled compaction (resume and replay never summarise again)."""
        if self.context is None:
            raise ReplayDivergedError(
                f"run {self.state.run_id}: the journal compacts the context at step "
                f"{compaction.step}, but agent {self.agent.name!r} has no ContextPolicy"
            )
        self.replay.consume(compaction)
        self.context.apply(compaction.folded, compaction.summary)
        self.state.charge(compaction.usage, compaction.cost_usd)

    async def _request(self, tools: Sequence[ToolDefinition]) -> ModelResponse:
        return await self.request_model(
            self.model, self._request_messages(), tools, self.agent.model_settings
        )

    async def request_model(
        self,
        model: Model,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Make one model call; under budgets, reserve its worst case first and settle it.

        Raises:
            _BudgetRefused: A budget refused the reservation (nothing was called).
        """
        budgets, state = self.budgets, self.state
        if budgets is None:
            return await _call(model, messages, tools, settings)
        ticket = await budgets.reserve(
            run_id=state.run_id,
            lease_epoch=self.journal.lease.epoch,
            user=state.user,
            agent=state.agent,
            model=model.name,
            messages=messages,
            tools=tools,
            settings=settings,
        )
        if isinstance(ticket, Denied):
            raise _BudgetRefused(ticket.budget, ticket.message)
        failpoint("after_budget_reserve")
        try:
            response = await _call(model, messages, tools, settings)
        except BaseException:
            await budgets.release(ticket)
            raise
        await budgets.settle(ticket, response.cost_usd)
        return response

    def _context_window(self, policy: ContextPolicy) -> ContextWindow:
        """The run's context; a model summary is a model call of this run (budgets apply)."""
        summarizer = policy.summarizer
        if self.budgets is not None and isinstance(summarizer, ModelSummarizer):
            summarizer = summarizer.with_model(_BudgetedModel(summarizer.model, self))
        return ContextWindow(policy, summarizer=summarizer)

    def _budget_refused(self, step: int, attempt: int, refused: _BudgetRefused) -> _Ending:
        """End the run ``budget_exceeded``, or pause it until a person raises the budget."""
        if self.budget_exhausted == "end":
            return _failure(
                RunStatus.BUDGET_EXCEEDED, "budget_exceeded", refused.message, refused.budget
            )
        self.journal.emit(
            BudgetExhausted(
                run_id=self.state.run_id,
                step=step,
                attempt=attempt,
                budget=refused.budget,
                message=refused.message,
                at=self.clock.now(),
            )
        )
        message = (
            f"{refused.message}; waiting for a person to raise it: "
            f"`tether budgets raise {refused.budget} --by USD`"
        )
        return _failure(RunStatus.WAITING_APPROVAL, "budget_exceeded", message, paused=True)

    def _model_failed(self, step: int, exc: Exception) -> _Ending:
        if not isinstance(exc, TetherError):
            # Adapters map provider errors to ModelError; anything else is a bug in the
            # adapter. The run still ends with a status, and the traceback is kept.
            logger.exception("model %r raised an unexpected exception", self.model.name)
        error_class = exc.error_class if isinstance(exc, TetherError) else ModelError.error_class
        message = exc.message if isinstance(exc, TetherError) else f"{type(exc).__name__}: {exc}"
        self.journal.emit(
            ModelFailed(
                run_id=self.state.run_id,
                step=step,
                error_class=error_class,
                message=message,
                at=self.clock.now(),
            )
        )
        return _failure(RunStatus.FAILED, error_class, message)

    def _record_result(self, record: CallRecord) -> None:
        state, outcome = self.state, record.outcome
        self.calls.in_flight.pop(record.call.id, None)
        if outcome.is_error:
            state.consecutive_errors += 1
        elif not record.repeated:
            state.consecutive_errors = 0
        self.journal.emit(
            ToolCallFinished(
                run_id=state.run_id,
                step=record.step,
                call_id=record.call.id,
                tool=record.call.name,
                content=outcome.content,
                is_error=outcome.is_error,
                error_class=outcome.error_class,
                executed=record.executed,
                repeated=record.repeated,
                at=self.clock.now(),
                tier=outcome.tier,
                dedupe_of=outcome.dedupe_of,
            )
        )
        state.degraded = state.degraded or outcome.tier is not None
        state.messages.append(
            ToolResultMessage(
                call_id=record.call.id,
                name=record.call.name,
                content=outcome.content,
                is_error=outcome.is_error,
            )
        )

    def _pause_in_doubt(self, doubted: Sequence[CallRecord]) -> _Ending:
        for record in doubted:
            self.journal.emit(
                ToolCallInDoubt(
                    run_id=self.state.run_id,
                    step=record.step,
                    call_id=record.call.id,
                    tool=record.call.name,
                    at=self.clock.now(),
                )
            )
        names = ", ".join(f"{r.call.name} (step {r.step})" for r in doubted)
        message = (
            f"at-most-once calls were interrupted and may or may not have taken effect: {names}"
        )
        if self.in_doubt == "end":
            for record in doubted:
                self._answer_unknown(record.step, record.call.id, record.call.name, "in_doubt")
            return _failure(RunStatus.NEEDS_REVIEW, "in_doubt", f"{message}; check them by hand")
        message += f"; review them with `tether review {self.state.run_id}`"
        return _failure(RunStatus.NEEDS_REVIEW, "in_doubt", message, paused=True)

    def _pause_for_approval(self, approval_ids: Sequence[str]) -> _Ending:
        ids = ", ".join(approval_ids)
        message = (
            f"waiting for a person to approve {len(approval_ids)} call(s): {ids}; "
            f"`tether approve ID` or `tether deny ID --reason TEXT`"
        )
        return _failure(RunStatus.WAITING_APPROVAL, "approval_required", message, paused=True)

    def _answer_unknown(self, step: int, call_id: str, tool: str, error_class: str) -> None:
        """Journal a result saying a started call's outcome is unknown (no orphan call)."""
        self.journal.emit(
            unknown_outcome(
                run_id=self.state.run_id,
                step=step,
                call_id=call_id,
                tool=tool,
                error_class=error_class,
                message=f"the run ended ({error_class}); whether this call took effect is unknown",
                at=self.clock.now(),
            )
        )

    async def abandon(self, error_class: str, message: str) -> RunResult[OutputT]:
        """End the run ``failed`` without running it (for example after a crash loop).

        Calls whose intent is journaled without a result get one saying their outcome is
        unknown, so the journal holds no orphaned call.
        """
        self.replay.consume_all()
        for step, intent in sorted(self.replay.intents.items()):
            if step not in self.replay.results:
                self._answer_unknown(step, intent.call_id, intent.tool, error_class)
        return await self.finish(_failure(RunStatus.FAILED, error_class, message))

    def _loop_ending(self, records: Sequence[CallRecord]) -> _Ending | None:
        for record in records:
            if record.digest is None:
                continue
            repeats = self.state.repeats.get(record.digest, 0)
            if repeats > self.limits.max_repeats:
                message = (
                    f"tool {record.call.name!r} was called {repeats + 1} times with the same "
                    f"arguments (max_repeats={self.limits.max_repeats})"
                )
                return _failure(RunStatus.FAILED, "loop_detected", message)
        return None

    def _error_ending(self) -> _Ending | None:
        state, cap = self.state, self.limits.max_consecutive_errors
        if cap is not None and state.consecutive_errors >= cap:
            message = f"{state.consecutive_errors} tool calls in a row failed"
            return _failure(RunStatus.FAILED, "too_many_errors", message)
        return None

    def _answer_unexecuted(self, calls: Sequence[ToolCall], reason: str) -> None:
        """Keep the history well formed: every call gets a result, even unexecuted ones."""
        for call in calls:
            message = f"not run because a limit was reached: {reason}"
            content = error_result("limit_reached", message, tool=call.name)
            outcome = ToolOutcome(content=content, is_error=True, error_class="limit_reached")
            self._record_result(CallRecord(call, self.state.steps, outcome))

    async def _answer_interrupted(self) -> None:
        """After the deadline cut a batch short, give each unanswered call a result."""
        last = next(
            (m for m in reversed(self.state.messages) if isinstance(m, AssistantMessage)), None
        )
        if last is None:
            return
        answered = {m.call_id for m in self.state.messages if isinstance(m, ToolResultMessage)}
        settle_repeats(self._batch)
        batch = {record.call.id: record for record in self._batch}
        for call in last.tool_calls:
            if call.id in answered:
                continue
            record = batch.get(call.id)
            if record is None or not record.finished:
                started_step = self.calls.in_flight.get(call.id)
                step = record.step if record is not None else started_step
                content = error_result(
                    "run_timed_out",
                    "the run's max_duration passed before this call finished",
                    tool=call.name,
                )
                outcome = ToolOutcome(content=content, is_error=True, error_class="run_timed_out")
                record = CallRecord(
                    call, step or self.state.steps, outcome, executed=started_step is not None
                )
            self._record_result(record)
        self._batch = []

    async def _wrap_up(self, ending: _Ending) -> Any:
        """One last call without tools; only if the token and cost caps leave room."""
        state = self.state
        if not self.limits.wrap_up or ending.status not in _WRAP_UP_STATUSES:
            return None
        if check.after_model_call(
            self.limits, usage=state.usage, cost_usd=state.cost_usd, strict=False
        ):
            return None
        state.messages.append(UserMessage(content=_WRAP_UP_PROMPT))
        try:
            async with asyncio.timeout(self._remaining_s()):
                response = await self.ask_model(())
        except TimeoutError:
            return None
        if isinstance(response, _Ending) or not response.text:
            return None
        state.messages.append(AssistantMessage(text=response.text))
        adapter = self.agent.output_adapter
        if adapter is None:
            return response.text
        try:
            return adapter.validate_json(response.text)
        except ValidationError:
            return None

    def _system_prompt(self) -> str:
        adapter = self.agent.output_adapter
        if adapter is None:
            return self.agent.instructions
        schema = json.dumps(adapter.json_schema(), separators=(",", ":"))
        return (
            f"{self.agent.instructions}\n\nWhen you give your final answer, reply with only "
            f"JSON matching this JSON schema:\n{schema}"
        ).strip()

    def _elapsed_s(self) -> float:
        """Seconds the run has been running, not counting its waits for people."""
        return (self.clock.now() - self.state.started_at).total_seconds() - self.replay.paused_s

    def _remaining_s(self) -> float | None:
        if self.limits.max_duration is None:
            return None
        return max(0.0, self.limits.max_duration.total_seconds() - self._elapsed_s())


async def _call(
    model: Model,
    messages: Sequence[Message],
    tools: Sequence[ToolDefinition],
    settings: ModelSettings,
) -> ModelResponse:
    response = await model.request(messages, tools, settings)
    if not isinstance(response, ModelResponse):
        raise TypeError(f"request() returned {type(response).__name__}, not ModelResponse")
    return response


class _BudgetedModel:
    """A model whose calls are reserved against the run's budgets (for summaries).

    A refused reservation raises ``ModelError`` (``budget_exceeded``), which a
    :class:`~tether.context.ModelSummarizer` answers with its deterministic summary.
    """

    def __init__(self, model: Model, run: Run[Any]) -> None:
        self._model = model
        self._run = run

    @property
    def name(self) -> str:
        """The wrapped model's name (its price is looked up by it)."""
        return self._model.name

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        settings: ModelSettings,
    ) -> ModelResponse:
        """Reserve, call the wrapped model, settle."""
        try:
            return await self._run.request_model(self._model, messages, tools, settings)
        except _BudgetRefused as refused:
            raise ModelError(refused.message, error_class="budget_exceeded") from None


def _failure(
    status: RunStatus,
    error_class: str,
    message: str,
    limit: str | None = None,
    *,
    paused: bool = False,
) -> _Ending:
    return _Ending(status, RunError(error_class=error_class, message=message), limit, paused=paused)


def _limit_ending(breach: check.LimitBreach) -> _Ending:
    return _failure(breach.status, breach.limit, breach.message, breach.limit)


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return TypeAdapter(type(output)).dump_json(output).decode()


def _output_feedback(exc: ValidationError) -> str:
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    lines = [f"- {'.'.join(map(str, p['loc'])) or '(root)'}: {p['msg']}" for p in problems[:20]]
    text = "Your final answer does not match the required JSON schema:\n" + "\n".join(lines)
    return text[:4000] + "\nReply again with only the corrected JSON."
