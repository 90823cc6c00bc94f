"""Observability: logs, traces and metrics, all derived from run events.

Every signal is computed from the journal's events (the subscribers a
:class:`~tether.runtime.Tether` is given), never from code inside the run loop::

    from tether import Tether
    from tether.observe import EventLog, Metrics, SpanRecorder, configure_logging

    configure_logging()                      # JSON lines on stderr, secrets redacted
    metrics = Metrics()
    runtime = Tether(subscribers=[EventLog(), metrics, SpanRecorder()])
"""

from tether.observe.logs import EventLog, JsonFormatter, configure_logging
from tether.observe.metrics import Metrics, serve_metrics
from tether.observe.redact import DEFAULT_REDACTOR, Redactor
from tether.observe.tracing import SpanRecorder

__all__ = [
    "DEFAULT_REDACTOR",
    "EventLog",
    "JsonFormatter",
    "Metrics",
    "Redactor",
    "SpanRecorder",
    "configure_logging",
    "serve_metrics",
]
