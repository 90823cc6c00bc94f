"""Retry policies and circuit breakers for calls that can fail: models and tools."""
