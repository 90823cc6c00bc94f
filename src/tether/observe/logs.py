"""Structured logs: one JSON line per run event, on the stdlib ``logging`` module.

:class:`EventLog` is an event subscriber: give it to ``Tether(subscribers=[...])`` and it
logs every durable event of every run once, on the ``tether.events`` logger, with
``run_id``, ``step``, ``agent``, ``user``, ``trace_id`` and the event's kind as extra
fields. :class:`JsonFormatter` writes any log record as one JSON object per line,
secrets redacted (see :mod:`tether.redact`). :func:`configure_logging` attaches
one such handler to the ``tether`` logger.

When the logger is not enabled for the level, an event costs one ``isEnabledFor`` call.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import IO, Any

from tether.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExhausted,
    ContextCompacted,
    Event,
    LimitHit,
    ModelFailed,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from tether.ids import trace_id
from tether.redact import DEFAULT_REDACTOR, Redactor
from tether.status import RunStatus

__all__ = ["EventLog", "JsonFormatter", "configure_logging"]

MAX_TRACKED_RUNS = 10_000
"""Runs whose agent and user :class:`EventLog` remembers at once (oldest forgotten first)."""

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}
"""Attributes every log record has; anything else on a record is an extra field."""


class JsonFormatter(logging.Formatter):
    """Formats a log record as one JSON object on one line, with secrets redacted.

    Keys: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, every extra field of
    the record (``run_id``, ``step``, ``agent``, ``user``, ``trace_id``, ``event``, …), and
    ``exc`` (the traceback) when the record has one. A value JSON cannot hold is written
    as its ``repr``.

    Args:
        redactor: Applied to the message and every extra value. Default:
            :data:`~tether.redact.DEFAULT_REDACTOR`.
    """

    def __init__(self, *, redactor: Redactor = DEFAULT_REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(self.redactor.redact(line), ensure_ascii=False, default=repr)


class EventLog:
    """An event subscriber that logs each run event as one record.

    Failures (a failed model call, a tool error, a call in doubt, a run that did not
    complete) are logged at WARNING, everything else at INFO.

    Args:
        logger: Where records go. Default: the ``tether.events`` logger.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("tether.events")
        self._runs: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def __call__(self, event: Event) -> None:
        """Log ``event`` (never raises)."""
        level = logging.WARNING if _failed(event) else logging.INFO
        if isinstance(event, RunStarted):
            self._remember(event)
        if self.logger.isEnabledFor(level):
            try:
                self._log(event, level)
            except Exception:  # a log line must never break a run
                logging.getLogger("tether").exception("could not log event %s", event.kind)
        if isinstance(event, RunFinished):
            self._runs.pop(event.run_id, None)

    def _remember(self, event: RunStarted) -> None:
        self._runs[event.run_id] = (event.agent, event.user)
        if len(self._runs) > MAX_TRACKED_RUNS:
            self._runs.popitem(last=False)

    def _log(self, event: Event, level: int) -> None:
        agent, user = self._runs.get(event.run_id, (None, None))
        extra: dict[str, Any] = {
            "run_id": event.run_id,
            "step": getattr(event, "step", None),
            "agent": agent,
            "user": user,
            "trace_id": trace_id(event.run_id),
            "event": event.kind,
            **_details(event),
        }
        self.logger.log(level, _message(event), extra=extra)


def _failed(event: Event) -> bool:
    match event:
        case ModelFailed() | ToolCallInDoubt():
            return True
        case ToolCallFinished(is_error=is_error):
            return is_error
        case RunFinished(status=status):
            return status is not RunStatus.COMPLETED
        case _:
            return False


def _message(event: Event) -> str:
    match event:
        case RunStarted(agent=agent):
            return f"run started: {agent}"
        case ModelResponded(response=response):
            calls = len(response.tool_calls)
            return f"model {response.model_name} answered" + (
                f" with {calls} call(s)" if calls else ""
            )
        case ModelFailed(error_class=error_class):
            return f"model call failed: {error_class}"
        case ToolCallStarted(tool=tool):
            return f"tool {tool} started"
        case ToolCallFinished(tool=tool, is_error=is_error, error_class=error_class):
            return f"tool {tool} failed: {error_class}" if is_error else f"tool {tool} finished"
        case RunFinished(status=status, error_class=error_class):
            return f"run finished: {status.value}" + (f" ({error_class})" if error_class else "")
        case _:
            return event.kind.replace("_", " ")


def _details(event: Event) -> dict[str, Any]:
    """The few fields of an event worth a column in a log search."""
    match event:
        case ModelResponded(response=response):
            cost = response.cost_usd
            return {
                "model": response.model_name,
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "cost_usd": None if cost is None else str(cost),
                "finish_reason": response.finish_reason,
            }
        case ModelFailed(error_class=error_class, message=message):
            return {"error_class": error_class, "error_message": message}
        case ToolCallStarted(tool=tool):
            return {"tool": tool}
        case ToolCallFinished(tool=tool, error_class=error_class):
            return {"tool": tool, "error_class": error_class, "executed": event.executed}
        case ApprovalRequested(tool=tool, approval_id=approval_id):
            return {"tool": tool, "approval_id": approval_id}
        case ApprovalDecided(outcome=outcome, approval_id=approval_id):
            return {"outcome": outcome, "approval_id": approval_id}
        case BudgetExhausted(budget=budget):
            return {"budget": budget}
        case LimitHit(limit=limit):
            return {"limit": limit}
        case ContextCompacted(folded=folded, tokens_before=before, tokens_after=after):
            return {"folded": folded, "tokens_before": before, "tokens_after": after}
        case RunFinished(status=status, error_class=error_class):
            return {
                "status": status.value,
                "error_class": error_class,
                "error_message": event.error_message,
            }
        case _:
            return {}


def configure_logging(
    *, level: int | str = "INFO", json: bool = True, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the ``tether`` loggers' records to ``stream``, one JSON object per line.

    Idempotent: calling it again replaces the handler it added before.

    Args:
        level: The ``tether`` logger's level. Default ``INFO``.
        json: Write JSON lines (default) or plain text.
        stream: Where to write. Default: standard error.

    Returns:
        The handler added.
    """
    root = logging.getLogger("tether")
    for handler in list(root.handlers):
        if getattr(handler, "_tether_configured", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    handler._tether_configured = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
