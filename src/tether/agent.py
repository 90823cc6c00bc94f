"""The agent definition: a frozen value with no run state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Generic

from pydantic import TypeAdapter

from tether.context import ContextPolicy
from tether.critic import Critic
from tether.errors import ConfigurationError
from tether.governance.approvals import ApprovalPolicy
from tether.models import Model, ModelSettings, resolve_model
from tether.run import OutputT, RunResult, Subscriber
from tether.runtime import Tether, run_blocking
from tether.settings import RunLimits
from tether.tools import Tool

__all__ = ["Agent"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Agent(Generic[OutputT]):
    """What an agent is: a name, a model, instructions, tools and limits.

    An ``Agent`` holds no run state, so one instance can serve any number of concurrent
    runs. Example::

        agent = Agent(name="calc", model=model, tools=[add], limits=RunLimits(max_steps=10))
        result = agent.run_sync("What is 1 + 2?")
    """

    name: str
    """Name shown in results, events and the CLI."""
    model: Model | str
    """The model that answers: a :class:`~tether.models.Model`, or a name that
    :func:`~tether.models.resolve_model` knows (``"local"``, ``"openai:gpt-4.1"``,
    ``"anthropic:claude-sonnet-5"``), resolved once when the agent is made."""
    instructions: str = ""
    """System prompt. Default empty."""
    tools: Sequence[Tool] = ()
    """Tools the model may call; names must be unique. Stored as a tuple."""
    limits: RunLimits = field(default_factory=RunLimits)
    """Caps of each run. Default :class:`~tether.settings.RunLimits()`."""
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    """Settings sent with every model request (output token cap, temperature). Default:
    the adapter's and provider's own defaults."""
    output_type: type[OutputT] | None = None
    """Type of the final output (a pydantic model, dataclass or any type pydantic
    validates). The model must answer with matching JSON; invalid answers get feedback and
    up to ``limits.max_output_retries`` revisions. Default ``None``: plain text."""
    critic: Critic | None = None
    """Pure checks the final answer must pass (see :mod:`tether.critic`): a failing answer
    goes back to the model with the problems, and after ``max_revisions`` the run ends
    ``needs_review``. Default ``None``: a valid answer is accepted as it is."""
    context: ContextPolicy | None = None
    """What the model sees of a long run's conversation: token and message budgets, the
    turns kept verbatim, pinned facts and how older turns are summarised (see
    :mod:`tether.context`). Default ``None``: every request carries the whole
    conversation."""
    approvals: ApprovalPolicy | None = None
    """Which tool calls wait for a person's approval (and how long a person has). A run
    that reaches one pauses in ``waiting_approval`` until ``tether approve`` or
    ``tether deny``. Default ``None``: no call asks."""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigurationError("Agent.name must not be empty")
        tools = tuple(self.tools)
        seen: set[str] = set()
        for item in tools:
            if not isinstance(item, Tool):
                raise ConfigurationError(
                    f"Agent {self.name!r}: {item!r} is not a Tool; decorate it with @tool"
                )
            if item.name in seen:
                raise ConfigurationError(f"Agent {self.name!r}: two tools are named {item.name!r}")
            seen.add(item.name)
        object.__setattr__(self, "tools", tools)
        object.__setattr__(self, "model", resolve_model(self.model))

    @cached_property
    def output_adapter(self) -> TypeAdapter[OutputT] | None:
        """Validator built from ``output_type``, or ``None`` for plain text."""
        if self.output_type is None or self.output_type is str:
            return None
        return TypeAdapter(self.output_type)

    async def run(
        self,
        task: str,
        *,
        user: str | None = None,
        runtime: Tether | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[OutputT]:
        """Run this agent on ``task`` and return the result.

        Never raises for an expected ending: read ``result.status``.

        Args:
            task: What the user asks for.
            user: Id of the user the run acts for. Default none.
            runtime: The runtime (store, clock) to use. Default: a new
                :class:`~tether.Tether` on the default store (``TETHER_STORE``, else
                ``./.tether/tether.db``).
            subscribers: Functions called with every event of this run.
        """
        if runtime is not None:
            return await runtime.run(self, task, user=user, subscribers=subscribers)
        own = Tether()
        try:
            return await own.run(self, task, user=user, subscribers=subscribers)
        finally:
            await own.close()

    def run_sync(
        self,
        task: str,
        *,
        user: str | None = None,
        runtime: Tether | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> RunResult[OutputT]:
        """Blocking :meth:`run`, for scripts and the REPL."""
        return run_blocking(self.run(task, user=user, runtime=runtime, subscribers=subscribers))
