"""Exceptions raised by tether.

Expected endings of a run (a limit, a failed model, a loop) are *values*: they come back
as a :class:`~tether.run.outcome.RunResult` with a status, never as exceptions. The
exceptions below are for programming mistakes and for the seams (models, tools) to
report failures in a typed way. Retryability is data on the instance, not a subclass.

The tree::

    TetherError                   base class; ``error_class`` and ``retryable`` on every instance
    ├── ConfigurationError        an agent, tool or argument is defined wrongly (a bug to fix)
    │   ├── AgentLoadError        ``module:attr`` or ``path.py:attr`` could not be loaded
    │   └── SchemaVersionError    a database was written by a newer tether; nothing was touched
    ├── ModelError                a model request failed; ``error_class`` says how
    ├── ToolError                 raised by tool authors to report a failure to the model
    ├── StoreError                the store refused an operation
    │   ├── RunNotFoundError      no run has that id
    │   ├── LeaseLostError        another owner holds the run now (fencing); stop writing
    │   └── RunStateError         the run is not in a state that allows the operation
    └── ReplayDivergedError       the journal does not match what the code does now
"""

from __future__ import annotations

__all__ = [
    "AgentLoadError",
    "ConfigurationError",
    "LeaseLostError",
    "ModelError",
    "ReplayDivergedError",
    "RunNotFoundError",
    "RunStateError",
    "SchemaVersionError",
    "StoreError",
    "TetherError",
    "ToolError",
]


class TetherError(Exception):
    """Base class of every exception tether raises.

    Attributes:
        error_class: A short stable identifier (``snake_case``) used in results,
            journals and metrics.
        retryable: Whether repeating the same operation may succeed.
    """

    error_class: str = "error"
    retryable: bool = False

    def __init__(
        self, message: str, *, error_class: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_class is not None:
            self.error_class = error_class
        if retryable is not None:
            self.retryable = retryable


class ConfigurationError(TetherError):
    """An agent, tool or call is defined wrongly. Fix the code; retrying cannot help."""

    error_class = "configuration_error"


class AgentLoadError(ConfigurationError):
    """An agent reference such as ``app.agents:support`` or ``agent.py:agent`` failed to load."""

    error_class = "agent_load_error"


class ModelError(TetherError):
    """A model request failed. Adapters raise it with one of these ``error_class`` values.

    Retryable (``retryable=True``; a :class:`~tether.resilience.RetryPolicy` tries again):

    - ``rate_limited``: HTTP 429; ``retry_after`` says how long the provider asked to wait.
    - ``overloaded``: HTTP 529 or 503, the provider is out of capacity.
    - ``server_error``: another HTTP 5xx, or a 200 response whose body is an error.
    - ``timeout``: no complete answer in time (connect, read or a stalled stream).
    - ``connection_error``: the endpoint could not be reached or dropped the connection.
    - ``stream_truncated``: a stream ended before its finish reason, was cut inside tool-call
      arguments or sent a malformed chunk; its tool calls are never executed.
    - ``invalid_response``: the provider answered with something that is not a response.

    Fatal (``retryable=False``; the run fails fast, or a fallback model serves):

    - ``auth_error``: HTTP 401 or 403, a missing or wrong API key.
    - ``quota_exhausted``: the account has no credit or quota left (a 429 that says so).
    - ``bad_request``: HTTP 400, 404 or 422, the request itself is wrong.
    - ``context_too_long``: the conversation does not fit the model's context window.
    - ``circuit_open``: the endpoint's circuit breaker is open; it was not called.
    - ``model_error``: anything else.

    Attributes:
        retry_after: Seconds the provider asked to wait before the next request, or
            ``None``.
        status_code: The HTTP status of the failed response, or ``None``.
    """

    error_class = "model_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, error_class=error_class, retryable=retryable)
        self.retry_after = retry_after
        self.status_code = status_code


class ToolError(TetherError):
    """Raised by a tool to report a failure that the model should see.

    The message is returned to the model as a structured error result; the run goes on.
    ``retryable=True`` asks the tool's retry policy for another attempt. ``executed=False``
    says the call certainly did not take effect (the request never left, a lock was not
    taken): only then is an ``at_most_once`` tool retried.

    Attributes:
        executed: ``False`` when the failed call certainly had no effect; ``None`` when
            unknown (the default).
        retry_after: Seconds the service asked to wait before the next attempt (its
            ``Retry-After``), or ``None``; a retry policy never waits less.
    """

    error_class = "tool_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: str | None = None,
        retryable: bool | None = None,
        executed: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, error_class=error_class, retryable=retryable)
        self.executed = executed
        self.retry_after = retry_after


class SchemaVersionError(ConfigurationError):
    """The database was written by a newer tether. Upgrade tether; nothing was changed."""

    error_class = "schema_version"


class StoreError(TetherError):
    """The store refused an operation."""

    error_class = "store_error"


class RunNotFoundError(StoreError):
    """No run has the given id."""

    error_class = "run_not_found"


class LeaseLostError(StoreError):
    """The run is owned by a newer lease (another worker, or a cancel). Stop writing.

    Raised by every journal write whose lease epoch is no longer current (fencing).
    """

    error_class = "lease_lost"


class RunStateError(StoreError):
    """The run's status does not allow the operation.

    For example: resuming a run a live worker owns, or reviewing a run with nothing in doubt.
    """

    error_class = "run_state"


class ReplayDivergedError(TetherError):
    """Replaying a journal produced a different event than the one recorded.

    The agent's code, tools or model script changed in a way that alters past decisions.
    """

    error_class = "replay_diverged"
