from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tether import RunContext
from tether.testing import FakeClock
from tether.toolkit import Trash, workspace_tools
from tether.tools import Compensation, Tool

_keys = itertools.count(1)


def context(key: str | None = None, *, run_id: str = "run-1", step: int = 1) -> RunContext:
    """A RunContext for calling a tool directly; a fresh idempotency key unless given."""
    return RunContext(
        run_id=run_id,
        agent="test",
        user=None,
        step=step,
        call_id=f"call_{step}",
        idempotency_key=key if key is not None else f"key-{next(_keys)}",
    )


def call_tool(tool: Tool, ctx: RunContext | None = None, **arguments: Any) -> Any:
    """Call a tool's function directly (sync or async), injecting a RunContext if it wants one."""
    if tool.context_param is not None:
        arguments[tool.context_param] = ctx if ctx is not None else context()
    result = tool.function(**arguments)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


def undo(tool: Tool, arguments: dict[str, Any], result: Any, *, step: int = 1) -> Any:
    """Run a tool's compensation with the result as the journal would give it back."""
    assert tool.compensate is not None
    decoded = json.loads(json.dumps(result))
    return tool.compensate(
        Compensation(
            run_id="run-1",
            step=step,
            arguments=arguments,
            result=decoded,
            idempotency_key=f"undo-{step}",
        )
    )


class Workspace:
    """A workspace folder with a sibling folder outside it that tools must never reach."""

    def __init__(self, base: Path) -> None:
        self.root = base / "ws"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "secret.txt").write_text("SECRET")
        self.clock = FakeClock()
        self.trash = Trash(self.root, clock=self.clock)
        self.tools = {t.name: t for t in workspace_tools(self.root, trash=self.trash)}

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    def file(self, relative: str, content: str = "") -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def outside_state(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.outside)): p.read_bytes()
            for p in sorted(self.outside.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)
