"""Governance: who may act, what it may cost, and a tamper-evident record of both."""
