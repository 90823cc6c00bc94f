"""Observability: logs, traces, metrics, health and drift, all derived from run events.

Every signal is computed from the journal's events (the subscribers a
:class:`~tether.runtime.Tether` is given, or the journal read back from the store), never
from code inside the run loop.
"""
