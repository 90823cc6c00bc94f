"""A real run: a scripted model writes and deletes files through Tether, then undo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tool_results
from tether import Agent, RunLimits, RunStatus, Tether
from tether.testing import ScriptedModel, call
from tether.toolkit import Trash, TrashKind, workspace_tools
from tether.undo import undo


@pytest.mark.anyio
async def test_an_agent_writes_and_deletes_files_in_its_workspace(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("stale notes")
    trash = Trash(tmp_path)
    tools = workspace_tools(tmp_path, trash=trash)
    model = ScriptedModel(
        [
            call("write_file", {"path": "notes/todo.md", "content": "- buy milk\n"}),
            call("delete_file", {"path": "old.txt"}),
            call("read_file", {"path": "../etc/passwd"}),
            "Done: wrote notes/todo.md and deleted old.txt.",
        ]
    )
    agent = Agent(name="clerk", model=model, tools=tools, limits=RunLimits(max_steps=10))

    tether = Tether(store="memory://")
    try:
        result = await tether.run(agent, "Tidy up the workspace.")
        check_the_run(tmp_path, trash, model, result.run_id, result.status)
        # `tether undo` compensates from what the journal recorded, newest first.
        report = await undo(tether, result.run_id, agent=agent)
        again = await undo(tether, result.run_id, agent=agent)
    finally:
        await tether.close()

    assert [(s.tool, s.outcome) for s in report.steps] == [
        ("delete_file", "undone"),
        ("write_file", "undone"),
    ]
    assert again.complete
    assert (tmp_path / "old.txt").read_text() == "stale notes"
    assert not (tmp_path / "notes/todo.md").exists()


def check_the_run(
    tmp_path: Path, trash: Trash, model: ScriptedModel, run_id: str, status: RunStatus
) -> None:
    assert status is RunStatus.COMPLETED
    assert (tmp_path / "notes/todo.md").read_text() == "- buy milk\n"
    assert not (tmp_path / "old.txt").exists()

    (deleted,) = [i for i in trash.list() if i.kind is TrashKind.FILE]
    assert deleted.original_path == tmp_path / "old.txt"
    assert deleted.run_id == run_id

    (escape,) = tool_results(model, 4)[-1:]
    assert escape.is_error
    assert "'..'" in json.loads(escape.content)["message"]
