"""The OpenTelemetry attribute names tether's spans use.

GenAI names follow the OpenTelemetry semantic conventions for generative AI (the
``gen_ai.*`` registry as of semantic-conventions v1.42.0, development status; the
conventions now live in ``open-telemetry/semantic-conventions-genai``). They are kept here
as plain strings rather than imported from ``opentelemetry-semantic-conventions``, whose
``gen_ai`` module is deprecated. Names under ``tether.`` are tether's own.
"""

from __future__ import annotations

__all__ = [
    "AGENT_NAME",
    "CONVERSATION_ID",
    "ERROR_TYPE",
    "OPERATION_NAME",
    "PROVIDER_NAME",
    "REQUEST_MODEL",
    "RESPONSE_FINISH_REASONS",
    "RESPONSE_MODEL",
    "TETHER_COST_USD",
    "TETHER_EXECUTED",
    "TETHER_PAUSED",
    "TETHER_REPEATED",
    "TETHER_STATUS",
    "TETHER_STEP",
    "TETHER_TIER",
    "TOOL_CALL_ID",
    "TOOL_NAME",
    "USAGE_INPUT_TOKENS",
    "USAGE_OUTPUT_TOKENS",
]

OPERATION_NAME = "gen_ai.operation.name"
"""``invoke_agent``, ``chat`` or ``execute_tool``."""
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
"""tether puts the run id here."""
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"

TETHER_STATUS = "tether.run.status"
TETHER_STEP = "tether.step"
TETHER_COST_USD = "tether.cost_usd"
TETHER_TIER = "tether.tool.tier"
TETHER_REPEATED = "tether.tool.repeated"
TETHER_EXECUTED = "tether.tool.executed"
TETHER_PAUSED = "tether.run.paused"
