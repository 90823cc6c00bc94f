"""Trash: delete, restore, records, listing, purge, idempotency and crash safety."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import ConfigurationError, ToolError
from tether.testing import FakeClock
from tether.toolkit import TRASH_DIRNAME, Trash, TrashError, TrashKind, _atomic
from tether.toolkit import trash as trash_module


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def trash(tmp_path: Path, clock: FakeClock) -> Trash:
    return Trash(tmp_path, clock=clock)


def test_delete_moves_a_file_aside_with_metadata(
    tmp_path: Path, trash: Trash, clock: FakeClock
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")

    item = trash.delete(path, run_id="run-7", reason="cleanup")

    assert not path.exists()
    assert item.kind is TrashKind.FILE
    assert item.original_path == path
    assert item.deleted_at == clock.now()
    assert item.size == 5
    assert (item.run_id, item.reason) == ("run-7", "cleanup")
    folder = tmp_path / TRASH_DIRNAME / item.id
    assert (folder / "payload").read_text() == "hello"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["id"] == item.id
    assert meta["original_path"] == str(path)
    assert meta["deleted_at"] == "2026-03-01T12:00:00+00:00"
    assert meta["size"] == 5
    assert meta["run_id"] == "run-7"
    assert meta["reason"] == "cleanup"
    assert trash.list() == [item]
    assert trash.get(item.id) == item


def test_delete_and_restore_a_directory(tmp_path: Path, trash: Trash) -> None:
    folder = tmp_path / "src"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "a.py").write_text("aaa")
    (folder / "b.py").write_text("bb")

    item = trash.delete(folder)
    assert item.kind is TrashKind.DIRECTORY
    assert item.size == 5
    assert not folder.exists()

    assert trash.restore(item.id) == folder
    assert (folder / "pkg" / "a.py").read_text() == "aaa"
    assert trash.list() == []


def test_a_symlink_is_trashed_as_a_link_and_its_target_stays(tmp_path: Path, trash: Trash) -> None:
    target = tmp_path / "target.txt"
    target.write_text("kept")
    link = tmp_path / "link"
    link.symlink_to(target)

    item = trash.delete(link)

    assert item.kind is TrashKind.SYMLINK
    assert not os.path.lexists(link)
    assert target.read_text() == "kept"
    trash.restore(item.id)
    assert link.is_symlink() and link.read_text() == "kept"


def test_restore_puts_a_file_back_and_removes_the_item(tmp_path: Path, trash: Trash) -> None:
    path = tmp_path / "a" / "b.txt"
    path.parent.mkdir()
    path.write_text("content")
    item = trash.delete(path)
    path.parent.rmdir()  # the parent folder went too: restore recreates it

    assert trash.restore(item.id) == path
    assert path.read_text() == "content"
    assert trash.get(item.id) is None
    assert not (tmp_path / TRASH_DIRNAME / item.id).exists()


def test_restore_refuses_when_the_original_path_exists_again(tmp_path: Path, trash: Trash) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    item = trash.delete(path)
    path.write_text("new")

    with pytest.raises(TrashError, match="exists again"):
        trash.restore(item.id)
    assert path.read_text() == "new"
    assert trash.get(item.id) is not None


def test_restore_with_overwrite_trashes_the_occupant_first(tmp_path: Path, trash: Trash) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    item = trash.delete(path)
    path.write_text("new")

    trash.restore(item.id, overwrite=True)

    assert path.read_text() == "old"
    (occupant,) = trash.list()
    assert occupant.reason is not None and item.id in occupant.reason
    assert (tmp_path / TRASH_DIRNAME / occupant.id / "payload").read_text() == "new"


def test_restore_of_an_unknown_or_malformed_id_is_refused(trash: Trash) -> None:
    for bad in ("nope", "../etc", "a/b", "", ".gone-x"):
        assert trash.get(bad) is None
        with pytest.raises(TrashError, match="no item"):
            trash.restore(bad)


def test_delete_refuses_missing_paths_and_the_trash_itself(tmp_path: Path, trash: Trash) -> None:
    with pytest.raises(TrashError, match="nothing to delete"):
        trash.delete(tmp_path / "missing")
    (tmp_path / "x").write_text("x")
    trash.delete(tmp_path / "x")
    with pytest.raises(TrashError, match="trash folder"):
        trash.delete(trash.path)
    with pytest.raises(TrashError, match="trash folder"):
        trash.delete(tmp_path)  # holds the trash
    with pytest.raises(TrashError, match="trash folder"):
        trash.delete(next(trash.path.iterdir()))


def test_trash_errors_are_tool_errors(trash: Trash) -> None:
    with pytest.raises(ToolError) as caught:
        trash.restore("missing")
    assert caught.value.error_class == "trash_error"


def test_list_is_newest_first(tmp_path: Path, trash: Trash, clock: FakeClock) -> None:
    ids = []
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
        ids.append(trash.delete(tmp_path / name).id)
        clock.advance(timedelta(minutes=1))
    assert [item.id for item in trash.list()] == ids[::-1]


def test_list_of_a_trash_never_used_is_empty(tmp_path: Path) -> None:
    assert Trash(tmp_path / "nowhere").list() == []


def test_purge_removes_items_older_than_the_age(
    tmp_path: Path, trash: Trash, clock: FakeClock
) -> None:
    (tmp_path / "old").write_text("o")
    old = trash.delete(tmp_path / "old")
    clock.advance(timedelta(days=10))
    (tmp_path / "new").write_text("n")
    new = trash.delete(tmp_path / "new")
    clock.advance(timedelta(days=1))

    assert trash.purge(timedelta(days=7)) == 1
    assert [item.id for item in trash.list()] == [new.id]
    assert not (trash.path / old.id).exists()
    assert trash.purge(timedelta(days=7)) == 0
    assert trash.purge(timedelta(0)) == 1
    assert trash.list() == []
    assert list(trash.path.iterdir()) == []


def test_purge_refuses_a_negative_age(trash: Trash) -> None:
    with pytest.raises(ConfigurationError):
        trash.purge(timedelta(seconds=-1))


def test_records_keep_the_last_state_and_give_it_back(trash: Trash, clock: FakeClock) -> None:
    row = {"id": 42, "name": "Ada", "tags": ["x", "y"], "balance": 1.5, "note": None}
    item = trash.delete_record("customer", "42", row, run_id="run-1", reason="deleted by agent")

    assert item.kind is TrashKind.RECORD
    assert (item.record_kind, item.record_key) == ("customer", "42")
    assert item.original_path is None
    assert item.deleted_at == clock.now()
    assert trash.read_record(item.id) == row
    assert trash.get(item.id) is not None  # reading leaves it
    assert trash.restore_record(item.id) == row
    assert trash.get(item.id) is None
    with pytest.raises(TrashError):
        trash.restore_record(item.id)


def test_records_must_be_json(trash: Trash) -> None:
    with pytest.raises(TrashError, match="JSON"):
        trash.delete_record("thing", "1", {"when": datetime(2026, 1, 1)})
    with pytest.raises(TrashError, match="JSON"):
        trash.delete_record("thing", "1", float("nan"))
    assert trash.list() == []


def test_records_and_files_are_not_mixed_up(tmp_path: Path, trash: Trash) -> None:
    record = trash.delete_record("row", "1", [1, 2])
    (tmp_path / "f").write_text("f")
    file_item = trash.delete(tmp_path / "f")
    with pytest.raises(TrashError, match="record"):
        trash.restore(record.id)
    with pytest.raises(TrashError, match="not a record"):
        trash.read_record(file_item.id)


def test_discard_removes_one_item_for_good(tmp_path: Path, trash: Trash) -> None:
    item = trash.delete_record("row", "1", 1)
    assert trash.discard(item.id) is True
    assert trash.discard(item.id) is False
    assert trash.list() == []


def test_an_idempotency_key_makes_delete_repeatable(tmp_path: Path, trash: Trash) -> None:
    path = tmp_path / "f.txt"
    path.write_text("v1")
    first = trash.delete(path, idempotency_key="call-1")
    path.write_text("v2")  # even if something reappears, the key answers with the first item

    assert trash.delete(path, idempotency_key="call-1") == first
    assert trash.find("call-1") == first
    assert trash.find("call-2") is None
    assert path.read_text() == "v2"
    assert len(trash.list()) == 1


def test_backup_copies_and_leaves_the_original(tmp_path: Path, trash: Trash) -> None:
    path = tmp_path / "f.txt"
    path.write_text("before")
    item = trash.backup(path, reason="before overwrite")
    path.write_text("after")

    assert (trash.path / item.id / "payload").read_text() == "before"
    path.unlink()
    trash.restore(item.id)
    assert path.read_text() == "before"


def test_an_interrupted_delete_leaves_the_original_and_no_item(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("safe")

    def crash(source: Path, destination: Path) -> None:
        raise KeyboardInterrupt  # the process dies between the metadata and the move

    monkeypatch.setattr(trash_module, "move_entry", crash)
    with pytest.raises(KeyboardInterrupt):
        trash.delete(path)
    monkeypatch.undo()

    assert path.read_text() == "safe"
    assert trash.list() == []
    (leftover,) = trash.path.iterdir()
    assert (leftover / "meta.json").exists()
    assert trash.purge(timedelta(0)) == 0  # not an item, but cleaned up
    assert list(trash.path.iterdir()) == []


def test_an_interrupted_restore_leaves_the_file_back_and_no_item(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("data")
    item = trash.delete(path)

    def crash(self: Trash, item_id: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trash, "_remove", crash)
    with pytest.raises(KeyboardInterrupt):
        trash.restore(item.id)
    monkeypatch.undo()

    assert path.read_text() == "data"
    assert trash.get(item.id) is None
    assert trash.list() == []


def test_delete_falls_back_to_copy_and_delete_across_devices(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    (folder / "link").symlink_to("sub/x.txt")
    real_replace = os.replace

    def cross_device(src: object, dst: object) -> None:
        source = Path(str(src))
        if source == folder or (source.name == "payload" and Path(str(dst)) == folder):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(_atomic.os, "replace", cross_device)
    item = trash.delete(folder)
    assert not folder.exists()
    payload = trash.path / item.id / "payload"
    assert (payload / "sub" / "x.txt").read_text() == "x"
    assert (payload / "link").is_symlink()

    trash.restore(item.id)
    assert (folder / "sub" / "x.txt").read_text() == "x"
    assert os.readlink(folder / "link") == "sub/x.txt"
    assert not [p for p in tmp_path.rglob("*") if _atomic.TEMP_MARKER in p.name]


def test_a_failed_cross_device_copy_leaves_the_original(
    tmp_path: Path, trash: Trash, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("keep me")
    real_replace = os.replace

    def cross_device(src: object, dst: object) -> None:
        if Path(str(src)) == path:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)  # type: ignore[arg-type]

    def broken_copy(source: Path, destination: Path) -> None:
        destination.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.os, "replace", cross_device)
    monkeypatch.setattr(_atomic, "copy_entry", broken_copy)
    with pytest.raises(OSError):
        trash.delete(path)

    assert path.read_text() == "keep me"
    assert trash.list() == []
    assert not [p for p in tmp_path.rglob("*") if _atomic.TEMP_MARKER in p.name]


def test_write_atomic_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o640)

    def fail(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(_atomic.os, "replace", fail)
    with pytest.raises(OSError):
        _atomic.write_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]

    _atomic.write_atomic(path, b"new")
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o640


def test_metadata_that_is_corrupt_hides_the_item(tmp_path: Path, trash: Trash) -> None:
    (tmp_path / "f").write_text("f")
    item = trash.delete(tmp_path / "f")
    (trash.path / item.id / "meta.json").write_text("{not json")
    assert trash.list() == []
    assert trash.get(item.id) is None
