"""Exceptions raised by tether.

Expected endings of a run (a limit, a failed model, a loop) are *values*: they come back
as a :class:`~tether.run.outcome.RunResult` with a status, never as exceptions. The
exceptions below are for programming mistakes and for the seams (models, tools) to
report failures in a typed way. Retryability is data on the instance, not a subclass.

The tree::

    TetherError                   base class; ``error_class`` and ``retryable`` on every instance
    ├── ConfigurationError        an agent, tool or argument is defined wrongly (a bug to fix)
    │   └── AgentLoadError        ``module:attr`` or ``path.py:attr`` could not be loaded
    ├── ModelError                a model request failed; the run ends ``failed``
    └── ToolError                 raised by tool authors to report a failure to the model
"""

from __future__ import annotations

__all__ = ["AgentLoadError", "ConfigurationError", "ModelError", "TetherError", "ToolError"]


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
    """A model request failed. The run that made it ends ``failed`` with ``error_class``."""

    error_class = "model_error"


class ToolError(TetherError):
    """Raised by a tool to report a failure that the model should see.

    The message is returned to the model as a structured error result; the run goes on.
    """

    error_class = "tool_error"
