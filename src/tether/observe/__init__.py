"""Observability: logs, traces, metrics, health, drift and feedback, from run events.

Every signal is computed from the journal's events (the subscribers a
:class:`~tether.runtime.Tether` is given), never from code inside the run loop::

    from tether import Tether
    from tether.observe import EventLog, Metrics, SpanRecorder, configure_logging

    configure_logging()                      # JSON lines on stderr, secrets redacted
    metrics = Metrics()
    runtime = Tether(subscribers=[EventLog(), metrics, SpanRecorder()])
"""

from tether.observe.drift import (
    AlertSink,
    DriftAlert,
    DriftPolicy,
    LogAlertSink,
    check_drift,
    detect_drift,
)
from tether.observe.feedback import Feedback, FeedbackBook, feedback_book
from tether.observe.health import AgentHealthMonitor, Health, HealthPolicy, HealthReport
from tether.observe.logs import EventLog, JsonFormatter, configure_logging
from tether.observe.metrics import Metrics, serve_metrics
from tether.observe.runs import RunMetrics, RunMetricsBook, run_metrics, run_metrics_book
from tether.observe.tracing import SpanRecorder
from tether.redact import DEFAULT_REDACTOR, Redactor

__all__ = [
    "DEFAULT_REDACTOR",
    "AgentHealthMonitor",
    "AlertSink",
    "DriftAlert",
    "DriftPolicy",
    "EventLog",
    "Feedback",
    "FeedbackBook",
    "Health",
    "HealthPolicy",
    "HealthReport",
    "JsonFormatter",
    "LogAlertSink",
    "Metrics",
    "Redactor",
    "RunMetrics",
    "RunMetricsBook",
    "SpanRecorder",
    "check_drift",
    "configure_logging",
    "detect_drift",
    "feedback_book",
    "run_metrics",
    "run_metrics_book",
    "serve_metrics",
]
