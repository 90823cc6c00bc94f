"""Workspace file tools: behaviour, refusals and compensations."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.toolkit.conftest import Workspace, call_tool, context, undo
from tether import ConfigurationError, Effect, Risk, ToolCall, ToolError
from tether.toolkit import TRASH_DIRNAME, Trash, TrashKind, workspace_tools
from tether.toolkit import files as files_module
from tether.toolkit._atomic import TEMP_MARKER
from tether.tools import execute, validate_call

# -- construction and metadata -------------------------------------------------------


def test_the_five_tools_and_their_risk_effect_and_undo(ws: Workspace) -> None:
    declared = {name: (t.risk, t.effect, t.compensate is not None) for name, t in ws.tools.items()}
    assert declared == {
        "list_files": (Risk.READ, Effect.READ, False),
        "read_file": (Risk.READ, Effect.READ, False),
        "write_file": (Risk.WRITE, Effect.IDEMPOTENT, True),
        "move_file": (Risk.WRITE, Effect.IDEMPOTENT, True),
        "delete_file": (Risk.WRITE, Effect.IDEMPOTENT, True),
    }
    for t in ws.tools.values():
        assert "ctx" not in t.definition.parameters["properties"]
        assert t.timeout is not None


def test_workspace_tools_refuse_a_bad_root_or_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        workspace_tools(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="not a folder"):
        workspace_tools(tmp_path / "file")
    with pytest.raises(ConfigurationError, match="max_read_bytes"):
        workspace_tools(tmp_path, max_read_bytes=0)


def test_the_default_trash_is_in_the_root(tmp_path: Path) -> None:
    tools = {t.name: t for t in workspace_tools(tmp_path)}
    (tmp_path / "f.txt").write_text("x")
    result = call_tool(tools["delete_file"], path="f.txt")
    assert (tmp_path / TRASH_DIRNAME / result["trash_id"] / "payload").read_text() == "x"


# -- list_files ----------------------------------------------------------------------


def test_list_files_shows_folders_files_and_links_sorted(ws: Workspace) -> None:
    ws.file("b.txt", "12345")
    ws.file("a/inner.txt")
    (ws.root / "l").symlink_to("b.txt")
    ws.trash.delete_record("r", "1", 1)  # creates the trash folder, which stays hidden
    (ws.root / f".b.txt{TEMP_MARKER}abcd").write_text("in flight")

    listing = call_tool(ws["list_files"])

    assert listing.splitlines() == ["a/", "b.txt (5 bytes)", "l@ (symlink)"]
    assert call_tool(ws["list_files"], path="a") == "inner.txt (0 bytes)"
    assert call_tool(ws["list_files"], path="./a/") == "inner.txt (0 bytes)"


def test_list_files_of_an_empty_missing_or_file_path(ws: Workspace) -> None:
    (ws.root / "empty").mkdir()
    ws.file("f.txt")
    assert call_tool(ws["list_files"], path="empty") == "empty: empty folder"
    with pytest.raises(ToolError, match="does not exist"):
        call_tool(ws["list_files"], path="nope")
    with pytest.raises(ToolError, match="not a folder"):
        call_tool(ws["list_files"], path="f.txt")


def test_list_files_caps_the_number_of_entries(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_module, "MAX_LISTED_ENTRIES", 3)
    for i in range(5):
        ws.file(f"f{i}")
    lines = call_tool(ws["list_files"]).splitlines()
    assert lines == ["f0 (0 bytes)", "f1 (0 bytes)", "f2 (0 bytes)", "[2 more entries not shown]"]


# -- read_file -----------------------------------------------------------------------


def test_read_file_returns_text(ws: Workspace) -> None:
    ws.file("docs/readme.md", "# Title\nnaïve ✓\n")
    assert call_tool(ws["read_file"], path="docs/readme.md") == "# Title\nnaïve ✓\n"


def test_read_file_cuts_at_the_size_cap_with_a_marker(tmp_path: Path) -> None:
    tools = {t.name: t for t in workspace_tools(tmp_path, max_read_bytes=10)}
    (tmp_path / "big.txt").write_text("0123456789abcdef")
    (tmp_path / "exact.txt").write_text("0123456789")
    # "é" is two bytes; the cap falls inside it, and the half character is dropped
    (tmp_path / "accent.txt").write_text("123456789é tail")

    assert call_tool(tools["read_file"], path="big.txt") == (
        "0123456789\n[truncated at 10 bytes; the file has 16 bytes]"
    )
    assert call_tool(tools["read_file"], path="exact.txt") == "0123456789"
    assert call_tool(tools["read_file"], path="accent.txt").startswith("123456789\n[truncated")


def test_read_file_refuses_binary_and_non_utf8(ws: Workspace) -> None:
    (ws.root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (ws.root / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ToolError, match="binary"):
        call_tool(ws["read_file"], path="image.png")
    with pytest.raises(ToolError, match="not UTF-8"):
        call_tool(ws["read_file"], path="latin1.txt")


def test_read_file_refuses_folders_missing_files_and_fifos(ws: Workspace) -> None:
    (ws.root / "dir").mkdir()
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(ToolError, match="is a folder"):
        call_tool(ws["read_file"], path="dir")
    with pytest.raises(ToolError, match="does not exist"):
        call_tool(ws["read_file"], path="missing.txt")
    with pytest.raises(ToolError, match="not a regular file"):
        call_tool(ws["read_file"], path="pipe")


def test_read_file_follows_a_symlink_inside_the_workspace(ws: Workspace) -> None:
    ws.file("real.txt", "via link")
    (ws.root / "alias.txt").symlink_to("real.txt")
    assert call_tool(ws["read_file"], path="alias.txt") == "via link"


def test_errors_name_the_relative_path_not_the_absolute_one(ws: Workspace) -> None:
    ws.file("a.txt")
    with pytest.raises(ToolError) as caught:
        call_tool(ws["read_file"], path="a.txt/b")
    assert str(ws.root) not in caught.value.message
    assert "a.txt/b" in caught.value.message


# -- write_file ----------------------------------------------------------------------


def test_write_file_creates_a_file_and_its_folders(ws: Workspace) -> None:
    result = call_tool(ws["write_file"], path="notes/day/1.txt", content="hello ✓")

    assert (ws.root / "notes/day/1.txt").read_text() == "hello ✓"
    assert result["path"] == "notes/day/1.txt"
    assert result["bytes"] == len("hello ✓".encode())
    assert (result["created"], result["changed"]) == (True, True)
    kept = ws.trash.get(result["undo"])
    assert kept is not None and kept.kind is TrashKind.RECORD


def test_write_file_keeps_the_old_content_in_the_trash(ws: Workspace) -> None:
    ws.file("f.txt", "old")
    result = call_tool(ws["write_file"], path="f.txt", content="new")

    assert (ws.root / "f.txt").read_text() == "new"
    assert (result["created"], result["changed"]) == (False, True)
    kept = ws.trash.get(result["undo"])
    assert kept is not None and kept.kind is TrashKind.FILE
    assert (ws.trash.path / kept.id / "payload").read_text() == "old"


def test_writing_the_same_content_again_changes_nothing(ws: Workspace) -> None:
    call_tool(ws["write_file"], path="f.txt", content="same")
    before = ws.trash.list()
    result = call_tool(ws["write_file"], path="f.txt", content="same")
    assert (result["changed"], result["undo"]) == (False, None)
    assert ws.trash.list() == before


def test_write_file_is_atomic_and_keeps_the_mode(ws: Workspace) -> None:
    path = ws.file("script.sh", "old")
    path.chmod(0o750)
    call_tool(ws["write_file"], path="script.sh", content="new")
    assert path.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in ws.root.iterdir()) == [TRASH_DIRNAME, "script.sh"]


def test_write_file_refuses_folders_and_the_root(ws: Workspace) -> None:
    (ws.root / "dir").mkdir()
    for path in ("dir", ".", "./"):
        with pytest.raises(ToolError, match="folder"):
            call_tool(ws["write_file"], path=path, content="x")
    assert ws.trash.list() == []


def test_write_file_through_a_link_inside_the_workspace_writes_its_target(
    ws: Workspace,
) -> None:
    ws.file("real.txt", "old")
    (ws.root / "alias.txt").symlink_to("real.txt")
    call_tool(ws["write_file"], path="alias.txt", content="new")
    assert (ws.root / "alias.txt").is_symlink()
    assert (ws.root / "real.txt").read_text() == "new"


def test_undo_of_a_write_restores_the_old_content(ws: Workspace) -> None:
    ws.file("f.txt", "old")
    arguments = {"path": "f.txt", "content": "new"}
    result = call_tool(ws["write_file"], **arguments)

    assert "restored" in undo(ws["write_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "old"
    # The written content went to the trash: the undo loses nothing either.
    assert [(ws.trash.path / i.id / "payload").read_text() for i in ws.trash.list()] == ["new"]
    assert "already undone" in undo(ws["write_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "old"


def test_undo_of_a_write_removes_a_file_it_created(ws: Workspace) -> None:
    arguments = {"path": "new/f.txt", "content": "data"}
    result = call_tool(ws["write_file"], **arguments)

    assert "removed" in undo(ws["write_file"], arguments, result)
    assert not (ws.root / "new/f.txt").exists()
    assert [i.kind for i in ws.trash.list()] == [TrashKind.FILE]  # the created file, kept
    assert "already undone" in undo(ws["write_file"], arguments, result)


def test_undo_of_a_write_refuses_when_the_file_changed_since(ws: Workspace) -> None:
    ws.file("f.txt", "old")
    arguments = {"path": "f.txt", "content": "new"}
    result = call_tool(ws["write_file"], **arguments)
    (ws.root / "f.txt").write_text("edited by someone")

    with pytest.raises(ToolError, match="changed after the call"):
        undo(ws["write_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "edited by someone"


def test_undo_of_a_write_says_when_its_trash_item_was_purged(ws: Workspace) -> None:
    ws.file("f.txt", "old")
    arguments = {"path": "f.txt", "content": "new"}
    result = call_tool(ws["write_file"], **arguments)
    ws.trash.purge(older_than=timedelta(0))
    with pytest.raises(ToolError, match="purged"):
        undo(ws["write_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "new"


def test_undo_of_a_write_that_changed_nothing_or_failed_does_nothing(ws: Workspace) -> None:
    ws.file("f.txt", "same")
    arguments = {"path": "f.txt", "content": "same"}
    result = call_tool(ws["write_file"], **arguments)
    assert "nothing to undo" in undo(ws["write_file"], arguments, result)
    assert "nothing to undo" in undo(ws["write_file"], arguments, "an error text")
    assert (ws.root / "f.txt").read_text() == "same"


def test_undo_of_consecutive_writes_in_reverse_order_restores_the_start(ws: Workspace) -> None:
    ws.file("f.txt", "v0")
    steps = []
    for step, content in enumerate(["v1", "v2", "v3"], start=1):
        arguments = {"path": "f.txt", "content": content}
        steps.append((arguments, call_tool(ws["write_file"], context(step=step), **arguments)))
    for arguments, result in reversed(steps):
        undo(ws["write_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "v0"


def test_a_write_repeated_after_a_crash_reports_what_the_first_attempt_kept(
    ws: Workspace,
) -> None:
    ws.file("f.txt", "old")
    ctx = context("the-same-call")
    arguments = {"path": "f.txt", "content": "new"}
    first = call_tool(ws["write_file"], ctx, **arguments)
    # The process died before the result was journaled; the call runs again, same key.
    again = call_tool(ws["write_file"], ctx, **arguments)

    assert again == first
    assert len(ws.trash.list()) == 1
    undo(ws["write_file"], arguments, again)
    assert (ws.root / "f.txt").read_text() == "old"


def test_a_create_repeated_after_a_crash_still_undoes_to_nothing(ws: Workspace) -> None:
    ctx = context("create-call")
    arguments = {"path": "f.txt", "content": "new"}
    call_tool(ws["write_file"], ctx, **arguments)
    again = call_tool(ws["write_file"], ctx, **arguments)
    assert again["created"] is True
    undo(ws["write_file"], arguments, again)
    assert not (ws.root / "f.txt").exists()


# -- move_file -----------------------------------------------------------------------


def test_move_file_renames_and_creates_folders(ws: Workspace) -> None:
    ws.file("a.txt", "A")
    result = call_tool(ws["move_file"], source="a.txt", destination="archive/2026/a.txt")
    assert not (ws.root / "a.txt").exists()
    assert (ws.root / "archive/2026/a.txt").read_text() == "A"
    assert (result["source"], result["destination"]) == ("a.txt", "archive/2026/a.txt")


def test_move_file_moves_folders(ws: Workspace) -> None:
    ws.file("src/x.py", "x")
    call_tool(ws["move_file"], source="src", destination="lib")
    assert (ws.root / "lib/x.py").read_text() == "x"


def test_move_file_never_overwrites(ws: Workspace) -> None:
    ws.file("a.txt", "A")
    ws.file("b.txt", "B")
    with pytest.raises(ToolError, match="already exists"):
        call_tool(ws["move_file"], source="a.txt", destination="b.txt")
    assert (ws.root / "b.txt").read_text() == "B"
    assert (ws.root / "a.txt").read_text() == "A"


def test_move_file_refusals(ws: Workspace) -> None:
    ws.file("d/f.txt")
    with pytest.raises(ToolError, match="does not exist"):
        call_tool(ws["move_file"], source="missing", destination="x")
    with pytest.raises(ToolError, match="into itself"):
        call_tool(ws["move_file"], source="d", destination="d/sub")
    with pytest.raises(ToolError, match="root"):
        call_tool(ws["move_file"], source=".", destination="elsewhere")
    with pytest.raises(ToolError, match="root"):
        call_tool(ws["move_file"], source="d", destination=".")


def test_undo_of_a_move_moves_it_back(ws: Workspace) -> None:
    ws.file("a.txt", "A")
    arguments = {"source": "a.txt", "destination": "b/c.txt"}
    result = call_tool(ws["move_file"], **arguments)

    assert "moved" in undo(ws["move_file"], arguments, result)
    assert (ws.root / "a.txt").read_text() == "A"
    assert not (ws.root / "b/c.txt").exists()
    assert ws.trash.list() == []  # the move's note is gone with it
    undo(ws["move_file"], arguments, result)  # again: nothing more happens
    assert (ws.root / "a.txt").read_text() == "A"


def test_undo_of_a_move_refuses_when_the_source_exists_again(ws: Workspace) -> None:
    ws.file("a.txt", "A")
    arguments = {"source": "a.txt", "destination": "b.txt"}
    result = call_tool(ws["move_file"], **arguments)
    ws.file("a.txt", "new A")
    with pytest.raises(ToolError, match="exists again"):
        undo(ws["move_file"], arguments, result)
    assert (ws.root / "a.txt").read_text() == "new A"
    assert (ws.root / "b.txt").read_text() == "A"


def test_a_move_repeated_after_a_crash_succeeds_without_moving_twice(ws: Workspace) -> None:
    ws.file("a.txt", "A")
    ctx = context("move-call")
    first = call_tool(ws["move_file"], ctx, source="a.txt", destination="b.txt")
    again = call_tool(ws["move_file"], ctx, source="a.txt", destination="b.txt")
    assert again == first
    # Without this call's note, the same situation is an error, not a success.
    with pytest.raises(ToolError, match="does not exist"):
        call_tool(ws["move_file"], context("other-call"), source="a.txt", destination="b.txt")


# -- delete_file ---------------------------------------------------------------------


def test_delete_file_moves_it_to_the_trash(ws: Workspace) -> None:
    ws.file("old.txt", "bye")
    result = call_tool(ws["delete_file"], context(run_id="run-9"), path="old.txt")

    assert not (ws.root / "old.txt").exists()
    assert result == {"deleted": "old.txt", "bytes": 3, "trash_id": result["trash_id"]}
    item = ws.trash.get(result["trash_id"])
    assert item is not None
    assert item.original_path == ws.root / "old.txt"
    assert item.run_id == "run-9"


def test_delete_file_refusals(ws: Workspace) -> None:
    (ws.root / "dir").mkdir()
    with pytest.raises(ToolError, match="does not exist"):
        call_tool(ws["delete_file"], path="missing.txt")
    with pytest.raises(ToolError, match="files only"):
        call_tool(ws["delete_file"], path="dir")
    with pytest.raises(ToolError, match="root"):
        call_tool(ws["delete_file"], path=".")
    assert (ws.root / "dir").is_dir()


def test_delete_file_of_a_link_deletes_the_link(ws: Workspace) -> None:
    ws.file("real.txt", "r")
    (ws.root / "alias").symlink_to("real.txt")
    call_tool(ws["delete_file"], path="alias")
    assert not os.path.lexists(ws.root / "alias")
    assert (ws.root / "real.txt").read_text() == "r"


def test_undo_of_a_delete_restores_the_file(ws: Workspace) -> None:
    ws.file("a/old.txt", "bye")
    arguments = {"path": "a/old.txt"}
    result = call_tool(ws["delete_file"], **arguments)

    assert "restored" in undo(ws["delete_file"], arguments, result)
    assert (ws.root / "a/old.txt").read_text() == "bye"
    assert ws.trash.list() == []
    assert "already undone" in undo(ws["delete_file"], arguments, result)


def test_undo_of_a_delete_refuses_to_overwrite_a_new_file(ws: Workspace) -> None:
    ws.file("f.txt", "first")
    arguments = {"path": "f.txt"}
    result = call_tool(ws["delete_file"], **arguments)
    ws.file("f.txt", "second")
    with pytest.raises(ToolError, match="exists again"):
        undo(ws["delete_file"], arguments, result)
    assert (ws.root / "f.txt").read_text() == "second"


def test_undo_of_a_delete_whose_item_was_purged_says_so(ws: Workspace) -> None:
    ws.file("f.txt", "x")
    result = call_tool(ws["delete_file"], path="f.txt")
    ws.trash.purge(timedelta(0))
    with pytest.raises(ToolError, match="purged"):
        undo(ws["delete_file"], {"path": "f.txt"}, result)


def test_a_delete_repeated_after_a_crash_reports_the_same_item(ws: Workspace) -> None:
    ws.file("f.txt", "x")
    ctx = context("delete-call")
    first = call_tool(ws["delete_file"], ctx, path="f.txt")
    again = call_tool(ws["delete_file"], ctx, path="f.txt")
    assert again == first
    assert len(ws.trash.list()) == 1


def test_a_file_recreated_before_the_repeat_is_deleted_as_a_new_item(ws: Workspace) -> None:
    ws.file("f.txt", "one")
    ctx = context("delete-call")
    first = call_tool(ws["delete_file"], ctx, path="f.txt")
    ws.file("f.txt", "two")
    again = call_tool(ws["delete_file"], ctx, path="f.txt")
    assert again["trash_id"] != first["trash_id"]
    assert not (ws.root / "f.txt").exists()
    assert len(ws.trash.list()) == 2


# -- what the model sees -------------------------------------------------------------


def test_a_refusal_reaches_the_model_as_a_structured_error(ws: Workspace) -> None:
    checked = validate_call(
        ToolCall(id="c1", name="read_file", arguments='{"path": "../outside/secret.txt"}'),
        ws.tools,
        max_argument_bytes=10_000,
    )
    outcome = asyncio.run(execute(checked, context(), timeout_s=5, max_output_chars=10_000))  # type: ignore[arg-type]
    assert outcome.is_error
    payload = json.loads(outcome.content)
    assert payload["error"] == "tool_error"
    assert payload["tool"] == "read_file"
    assert "'..'" in payload["message"]
    assert "SECRET" not in outcome.content


def test_trash_items_of_a_workspace_are_plain_trash_items(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "elsewhere")
    (tmp_path / "ws").mkdir()
    tools = {t.name: t for t in workspace_tools(tmp_path / "ws", trash=trash)}
    (tmp_path / "ws" / "f.txt").write_text("x")
    result = call_tool(tools["delete_file"], path="f.txt")
    assert trash.get(result["trash_id"]) is not None
    assert not (tmp_path / "ws" / TRASH_DIRNAME).exists()


def test_a_name_too_long_for_the_file_system_is_a_tool_error(ws: Workspace) -> None:
    for name in ("read_file", "list_files", "delete_file"):
        with pytest.raises(ToolError, match="too long"):
            call_tool(ws[name], path="a" * 300)
    with pytest.raises(ToolError, match="too long"):
        call_tool(ws["write_file"], path="d/" + "b" * 300, content="x")


def test_write_file_refuses_content_that_is_not_unicode_text(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="lone surrogate"):
        call_tool(ws["write_file"], path="f.txt", content="bad \ud800 text")
    assert not (ws.root / "f.txt").exists()
