"""Tools: definition (``@tool``), argument validation and execution of one call."""

from tether.tools.executor import ToolOutcome, execute
from tether.tools.feedback import MAX_ERROR_BYTES, error_result, truncate_output
from tether.tools.tool import Compensation, Dedupe, Effect, Risk, RunContext, Tool, tool
from tether.tools.validation import Rejected, Validated, validate_call

__all__ = [
    "MAX_ERROR_BYTES",
    "Compensation",
    "Dedupe",
    "Effect",
    "Rejected",
    "Risk",
    "RunContext",
    "Tool",
    "ToolOutcome",
    "Validated",
    "error_result",
    "execute",
    "tool",
    "truncate_output",
    "validate_call",
]
