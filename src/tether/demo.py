"""The agent of ``tether demo``: an operations assistant for a small workspace.

It runs on the local model (offline) with the built-in file tools, confined to a
workspace folder the demo fills with a few files. Deleting a file moves it to the
workspace's trash, and needs a person's approval first (``ApprovalPolicy``); ``tether
undo`` brings it back.

The agent is importable as ``tether.demo:agent`` so that ``tether resume``, ``tether
undo`` and workers can load it after the demo's process has ended. Its workspace is
``TETHER_DEMO_WORKSPACE``, else ``./.tether/demo-workspace``.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path

from tether.agent import Agent
from tether.context import ContextPolicy
from tether.governance.approvals import ApprovalPolicy
from tether.models import LocalModel, ModelSettings
from tether.settings import RunLimits
from tether.toolkit import workspace_tools

__all__ = ["BUDGET_USD", "FILES", "TASK", "build_agent", "prepare_workspace", "workspace_path"]

FILES: dict[str, str] = {
    "old.log": "2025-01-03 12:00:01 DEBUG cache warmed\n" * 200,
    "notes.txt": "Rotate the API keys on Friday.\nAsk Sam about the backup window.\n",
    "reports/q3.md": "# Q3\n\nRevenue up 4 %. Churn flat.\n",
}
"""The demo workspace: path (relative) -> content."""

TASK = "Delete the file old.log."
"""What the demo asks the assistant to do."""

BUDGET_USD = Decimal("0.05")
"""The demo's per-run budget, in US dollars (the local model costs nothing)."""

INSTRUCTIONS = (
    "You are an operations assistant for a folder of files. To delete a file, call "
    'delete_file once with its path. When a tool result says "deleted", the work is '
    "done: reply to the user in one short sentence and call no more tools. If a call was "
    "denied, do not try it again: tell the user."
)

LIMITS = RunLimits(
    max_steps=8,
    max_tool_calls=4,
    max_duration=timedelta(minutes=2),
    max_repeats=1,
    max_consecutive_errors=3,
)
"""Caps of each demo run (shown before it starts)."""

POLICY = ApprovalPolicy(ask_for_tools=frozenset({"delete_file"}), ttl=timedelta(hours=1))
"""Deleting a file always waits for a person; they have an hour."""


def workspace_path() -> Path:
    """Where the demo's files live: ``TETHER_DEMO_WORKSPACE``, else ``./.tether/demo-workspace``."""
    configured = os.environ.get("TETHER_DEMO_WORKSPACE")
    return Path(configured) if configured else Path(".tether") / "demo-workspace"


def prepare_workspace(root: Path) -> None:
    """Make ``root`` hold exactly :data:`FILES` (anything else there, trash included, goes)."""
    if root.exists():
        shutil.rmtree(root)
    for relative, content in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def build_agent(root: Path) -> Agent[str]:
    """The demo's assistant, with file tools confined to ``root`` (which must exist)."""
    tools = [
        t for t in workspace_tools(root) if t.name in ("list_files", "read_file", "delete_file")
    ]
    model = LocalModel()
    # The model reads 2,048 tokens; 96 go to its answer. Reading old.log alone would
    # overflow it, so long outputs are shown cut and old turns are summarised.
    context = ContextPolicy(
        max_tokens=1800, keep_turns=3, max_tool_output_chars=1500, count_tokens=model.count_tokens
    )
    return Agent(
        name="ops-assistant",
        model=model,
        instructions=INSTRUCTIONS,
        tools=tools,
        limits=LIMITS,
        model_settings=ModelSettings(max_output_tokens=96),
        approvals=POLICY,
        context=context,
    )


@cache
def _agent() -> Agent[str]:
    root = workspace_path()
    if not root.is_dir():
        prepare_workspace(root)
    return build_agent(root)


def __getattr__(name: str) -> object:
    # ``tether.demo:agent`` is built on first use: it loads the local model's file and
    # needs the workspace to exist.
    if name == "agent":
        return _agent()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
