"""Workspace file tools, confined to one folder, with undo through a :class:`Trash`.

:func:`workspace_tools` returns five tools: ``list_files``, ``read_file``, ``write_file``,
``move_file`` and ``delete_file``. Every path the model gives is relative to the workspace
root and checked before anything is touched (:class:`_Workspace.locate`):

- no NUL byte, not empty, not absolute;
- no ``..`` component (even one that would stay inside);
- no component named ``.tether-trash`` (the trash is off limits);
- no symlink anywhere along the path that resolves outside the root or into the trash,
  and no symlink loop.

A refused path raises :class:`~tether.errors.ToolError` with the reason, so the model sees
why. The checks run on every call, so they hold however the model arranges links; they do
not guard against another local process swapping files between the check and the use.

Undo: before ``write_file`` changes a file it keeps the old content in the trash (or a
note that the file did not exist), ``delete_file`` moves files into the trash, and
``move_file`` notes the move. Each tool's ``compensate`` function uses that to put things
back. Trash items are keyed by the call's idempotency key, so a call repeated after a crash
finds what its first attempt kept instead of keeping the half-changed state.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from tether.errors import ConfigurationError, ToolError
from tether.toolkit._atomic import TEMP_MARKER, move_entry, write_atomic
from tether.toolkit.trash import TRASH_DIRNAME, Trash, TrashKind
from tether.tools import Compensation, RunContext, Tool, tool

__all__ = ["workspace_tools"]

FILE_TOOL_TIMEOUT = 30.0
"""Seconds one file tool call may take (the tools are sync, so they run in a thread)."""
MAX_LISTED_ENTRIES = 1000
"""``list_files`` shows at most this many entries of one folder."""
_BINARY_PROBE = 8192
_CREATED = "write_file.created"
_MOVED = "move_file.moved"


def workspace_tools(
    root: Path, *, trash: Trash | None = None, max_read_bytes: int = 1_000_000
) -> list[Tool]:
    """Build the workspace file tools, confined to ``root``.

    ============== ======= ============ ===================================================
    Tool           Risk    Effect       Undo (``compensate``)
    ============== ======= ============ ===================================================
    ``list_files`` read    read         —
    ``read_file``  read    read         —
    ``write_file`` write   idempotent   restores the old content, or removes a new file
    ``move_file``  write   idempotent   moves it back
    ``delete_file`` write  idempotent   restores it from the trash
    ============== ======= ============ ===================================================

    Args:
        root: The workspace folder; it must exist. Symlinks in it are resolved once.
        trash: Where deleted files and old contents go. Default: ``Trash(root)``, that is
            ``root/.tether-trash``.
        max_read_bytes: ``read_file`` returns at most this many bytes of a file, then a
            ``[truncated at N bytes ...]`` marker. Default 1,000,000.

    Raises:
        ConfigurationError: ``root`` is not an existing folder, or ``max_read_bytes`` is
            not positive.
    """
    if max_read_bytes <= 0:
        raise ConfigurationError("workspace_tools: max_read_bytes must be positive")
    try:
        resolved = Path(root).resolve(strict=True)
    except OSError as exc:
        raise ConfigurationError(f"workspace root {root} does not exist: {exc}") from None
    if not resolved.is_dir():
        raise ConfigurationError(f"workspace root {root} is not a folder")
    space = _Workspace(resolved, trash if trash is not None else Trash(resolved), max_read_bytes)
    return [
        _list_files_tool(space),
        _read_file_tool(space),
        _write_file_tool(space),
        _move_file_tool(space),
        _delete_file_tool(space),
    ]


class _Workspace:
    """The root, its trash and the path checks every tool shares."""

    def __init__(self, root: Path, trash: Trash, max_read_bytes: int) -> None:
        self.root = root
        self.trash = trash
        self.trash_dir = Path(os.path.realpath(trash.path))
        self.max_read_bytes = max_read_bytes

    def locate(self, path: str) -> tuple[Path, str]:
        """Check ``path``; return its place under the root and its normalised form.

        The place is lexical (a final symlink is not followed); the normalised form is
        relative, ``"."`` for the root itself.

        Raises:
            ToolError: The path is refused; the message says why.
        """
        parts = _relative_parts(path)
        lexical = self.root.joinpath(*parts)
        shown = "/".join(parts) or "."
        current = self.root
        with _os_errors(shown):
            for index, part in enumerate(parts):
                current = current / part
                if current.is_symlink():
                    self._check_link(current, "/".join(parts[: index + 1]))
                elif not current.exists():
                    break
            self._check_inside(Path(os.path.realpath(lexical)), path)
        return lexical, shown

    def real(self, path: str) -> tuple[Path, str]:
        """Like :meth:`locate`, with symlinks (inside the root) followed."""
        lexical, relative = self.locate(path)
        return Path(os.path.realpath(lexical)), relative

    def _check_link(self, link: Path, shown: str) -> None:
        try:
            target = os.path.realpath(link, strict=True)
        except FileNotFoundError:
            target = os.path.realpath(link)  # dangling: where a write would land
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ToolError(f"path {shown!r} is a symlink loop") from None
            raise ToolError(f"path {shown!r}: {exc.strerror}") from None
        self._check_inside(Path(target), shown, link=True)

    def _check_inside(self, real: Path, shown: str, *, link: bool = False) -> None:
        if real != self.root and self.root not in real.parents:
            what = "is a symlink that points" if link else "leads"
            raise ToolError(f"path {shown!r} {what} outside the workspace; it is refused")
        if real == self.trash_dir or self.trash_dir in real.parents:
            raise ToolError(f"path {shown!r} leads into the trash folder, which is off limits")


def _relative_parts(path: str) -> list[str]:
    if "\x00" in path:
        raise ToolError("the path contains a NUL byte; it is refused")
    if not path.strip():
        raise ToolError("the path is empty; give a path relative to the workspace root")
    if os.path.isabs(path) or path.startswith("\\"):
        raise ToolError(
            f"absolute path {path!r} refused; give a path relative to the workspace root"
        )
    parts = [part for part in PurePosixPath(path).parts if part != "."]
    if ".." in parts:
        raise ToolError(f"path {path!r} contains '..'; it is refused, give a path without '..'")
    if any(part.casefold() == TRASH_DIRNAME for part in parts):
        raise ToolError(
            f"path {path!r} names the trash folder {TRASH_DIRNAME}, which is off limits"
        )
    return parts


@contextmanager
def _os_errors(shown: str) -> Iterator[None]:
    """Report file-system failures by the path the model gave, never the absolute one."""
    try:
        yield
    except ToolError:
        raise
    except OSError as exc:
        raise ToolError(f"{shown!r}: {exc.strerror or type(exc).__name__}") from None


def _list_files_tool(space: _Workspace) -> Tool:
    @tool(risk="read", timeout=FILE_TOOL_TIMEOUT)
    def list_files(path: str = ".") -> str:
        """List one folder of the workspace: sub-folders end with '/', files show their size.

        Args:
            path: Folder relative to the workspace root. Default: the root.
        """
        folder, shown = space.real(path)
        with _os_errors(shown):
            if not folder.exists():
                raise ToolError(f"{shown!r} does not exist")
            if not folder.is_dir():
                raise ToolError(f"{shown!r} is a file, not a folder; use read_file")
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        lines: list[str] = []
        for entry in entries:
            if entry.name.casefold() == TRASH_DIRNAME or TEMP_MARKER in entry.name:
                continue
            lines.append(_describe(entry))
        if not lines:
            return f"{shown}: empty folder"
        hidden = len(lines) - MAX_LISTED_ENTRIES
        if hidden > 0:
            lines = [*lines[:MAX_LISTED_ENTRIES], f"[{hidden} more entries not shown]"]
        return "\n".join(lines)

    return list_files


def _describe(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return f"{entry.name}@ (symlink)"
    if entry.is_dir():
        return f"{entry.name}/"
    try:
        return f"{entry.name} ({entry.stat().st_size} bytes)"
    except OSError:
        return entry.name


def _read_file_tool(space: _Workspace) -> Tool:
    limit = space.max_read_bytes

    @tool(risk="read", timeout=FILE_TOOL_TIMEOUT)
    def read_file(path: str) -> str:
        """Read a UTF-8 text file of the workspace.

        Args:
            path: File relative to the workspace root.
        """
        target, shown = space.real(path)
        with _os_errors(shown):
            if not os.path.lexists(target):
                raise ToolError(f"{shown!r} does not exist")
            mode = target.stat().st_mode
            if stat.S_ISDIR(mode):
                raise ToolError(f"{shown!r} is a folder; use list_files")
            if not stat.S_ISREG(mode):
                raise ToolError(f"{shown!r} is not a regular file; it is refused")
            with open(target, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data = handle.read(limit + 1)
        return _decode_text(data, limit, size, shown)

    return read_file


def _decode_text(data: bytes, limit: int, size: int, shown: str) -> str:
    truncated = len(data) > limit
    data = data[:limit]
    if b"\x00" in data[:_BINARY_PROBE]:
        raise ToolError(f"{shown!r} is a binary file; read_file reads UTF-8 text only")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not truncated)
    except UnicodeDecodeError:
        raise ToolError(f"{shown!r} is not UTF-8 text; read_file reads UTF-8 text only") from None
    if truncated:
        text += f"\n[truncated at {limit} bytes; the file has {size} bytes]"
    return text


def _write_file_tool(space: _Workspace) -> Tool:
    def undo(done: Compensation) -> str:
        return _undo_write(space, done)

    @tool(risk="write", effect="idempotent", timeout=FILE_TOOL_TIMEOUT, compensate=undo)
    def write_file(path: str, content: str, ctx: RunContext) -> dict[str, Any]:
        """Write a UTF-8 text file in the workspace, replacing it whole if it exists.

        Missing folders are created. Writing the same content again changes nothing.

        Args:
            path: File relative to the workspace root.
            content: The complete new content of the file.
            ctx: Injected by tether (the call's idempotency key keys its undo data).
        """
        target, shown = space.real(path)
        if shown == ".":
            raise ToolError("the workspace root is a folder; give a file path")
        try:
            data = content.encode()
        except UnicodeEncodeError:
            raise ToolError("the content is not valid Unicode text (a lone surrogate)") from None
        with _os_errors(shown):
            _check_writable(target, shown)
            kept = space.trash.find(ctx.idempotency_key)
            if kept is None:
                if target.exists():
                    if _same_content(target, data):
                        return _written(shown, data, changed=False, undo=None)
                    kept = space.trash.backup(
                        target,
                        run_id=ctx.run_id,
                        reason=f"write_file {shown}: content before the write",
                        idempotency_key=ctx.idempotency_key,
                    )
                else:
                    kept = space.trash.delete_record(
                        _CREATED,
                        shown,
                        {"path": shown},
                        run_id=ctx.run_id,
                        reason=f"write_file {shown}: the file did not exist",
                        idempotency_key=ctx.idempotency_key,
                    )
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data)
        created = kept.kind is TrashKind.RECORD
        return _written(shown, data, changed=True, undo=kept.id, created=created)

    return write_file


def _check_writable(target: Path, shown: str) -> None:
    if not os.path.lexists(target):
        return
    mode = target.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ToolError(f"{shown!r} is a folder; give a file path")
    if not stat.S_ISREG(mode):
        raise ToolError(f"{shown!r} is not a regular file; it is refused")


def _same_content(path: Path, data: bytes) -> bool:
    return path.stat().st_size == len(data) and path.read_bytes() == data


def _written(
    shown: str, data: bytes, *, changed: bool, undo: str | None, created: bool = False
) -> dict[str, Any]:
    return {"path": shown, "bytes": len(data), "created": created, "changed": changed, "undo": undo}


def _undo_write(space: _Workspace, done: Compensation) -> str:
    result = done.result
    if not isinstance(result, dict) or not result.get("changed"):
        return "nothing to undo: the call changed nothing"
    target, shown = space.real(str(result["path"]))
    written = str(done.arguments["content"]).encode()
    kept = space.trash.get(str(result["undo"]))
    with _os_errors(shown):
        current = target.read_bytes() if target.is_file() else None
        if kept is None:
            if current == written:
                raise ToolError(
                    f"cannot undo the write to {shown!r}: the trash no longer holds what it "
                    f"kept ({result['undo']}); was it purged?"
                )
            return f"already undone: {shown!r}"
        if current is not None:
            if current != written:
                raise ToolError(
                    f"cannot undo the write to {shown!r}: the file changed after the call; "
                    "it was left as it is"
                )
            space.trash.delete(target, run_id=done.run_id, reason=f"undo of step {done.step}")
        if kept.kind is TrashKind.RECORD:
            space.trash.discard(kept.id)
            return f"removed {shown!r}, which the call had created (it is in the trash)"
        space.trash.restore(kept.id)
    return f"restored the earlier content of {shown!r}"


def _move_file_tool(space: _Workspace) -> Tool:
    def undo(done: Compensation) -> str:
        return _undo_move(space, done)

    @tool(risk="write", effect="idempotent", timeout=FILE_TOOL_TIMEOUT, compensate=undo)
    def move_file(source: str, destination: str, ctx: RunContext) -> dict[str, Any]:
        """Move or rename a file or folder inside the workspace. Never overwrites.

        Missing folders of the destination are created.

        Args:
            source: Current path, relative to the workspace root.
            destination: New path, relative to the workspace root; must not exist yet.
            ctx: Injected by tether (the call's idempotency key keys its undo data).
        """
        src, src_shown = space.locate(source)
        dst, dst_shown = space.locate(destination)
        for shown in (src_shown, dst_shown):
            if shown == ".":
                raise ToolError("the workspace root itself cannot be moved or replaced")
        result = {"source": src_shown, "destination": dst_shown}
        with _os_errors(src_shown):
            noted = space.trash.find(ctx.idempotency_key)
            src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
            if noted is not None and not src_there and dst_there:
                return {**result, "undo": noted.id}  # this call already moved it
            if not src_there:
                raise ToolError(f"{src_shown!r} does not exist")
            if dst_there:
                raise ToolError(
                    f"{dst_shown!r} already exists; move_file never overwrites, so delete it "
                    "first or choose another name"
                )
            if dst_shown.startswith(f"{src_shown}/"):
                raise ToolError(f"cannot move {src_shown!r} into itself")
            noted = noted or space.trash.delete_record(
                _MOVED,
                f"{src_shown} -> {dst_shown}",
                result,
                run_id=ctx.run_id,
                reason=f"move_file {src_shown} -> {dst_shown}",
                idempotency_key=ctx.idempotency_key,
            )
            dst.parent.mkdir(parents=True, exist_ok=True)
            move_entry(src, dst)
        return {**result, "undo": noted.id}

    return move_file


def _undo_move(space: _Workspace, done: Compensation) -> str:
    result = done.result
    if not isinstance(result, dict) or "destination" not in result:
        return "nothing to undo: the call moved nothing"
    src, src_shown = space.locate(str(result["source"]))
    dst, dst_shown = space.locate(str(result["destination"]))
    with _os_errors(dst_shown):
        src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
        if src_there and dst_there:
            raise ToolError(
                f"cannot move {dst_shown!r} back: {src_shown!r} exists again; left as it is"
            )
        if not src_there and not dst_there:
            raise ToolError(f"cannot move {dst_shown!r} back: it no longer exists")
        if dst_there:
            src.parent.mkdir(parents=True, exist_ok=True)
            move_entry(dst, src)
        if result.get("undo"):
            space.trash.discard(str(result["undo"]))
    return f"moved {dst_shown!r} back to {src_shown!r}"


def _delete_file_tool(space: _Workspace) -> Tool:
    def undo(done: Compensation) -> str:
        return _undo_delete(space, done)

    @tool(risk="write", effect="idempotent", timeout=FILE_TOOL_TIMEOUT, compensate=undo)
    def delete_file(path: str, ctx: RunContext) -> dict[str, Any]:
        """Delete a file of the workspace (it goes to the trash and can be restored).

        Args:
            path: File relative to the workspace root.
            ctx: Injected by tether (the call's idempotency key keys its undo data).
        """
        target, shown = space.locate(path)
        if shown == ".":
            raise ToolError("the workspace root cannot be deleted")
        with _os_errors(shown):
            there = os.path.lexists(target)
            earlier = space.trash.find(ctx.idempotency_key)
            if earlier is not None and not there:
                return _deleted(shown, earlier.id, earlier.size)  # this call already did it
            if not there:
                raise ToolError(f"{shown!r} does not exist")
            if target.is_dir() and not target.is_symlink():
                raise ToolError(f"{shown!r} is a folder; delete_file deletes files only")
            item = space.trash.delete(
                target,
                run_id=ctx.run_id,
                reason=f"delete_file {shown}",
                # A file recreated since this call's first attempt is a new item.
                idempotency_key=None if earlier is not None else ctx.idempotency_key,
            )
        return _deleted(shown, item.id, item.size)

    return delete_file


def _deleted(shown: str, item_id: str, size: int) -> dict[str, Any]:
    return {"deleted": shown, "bytes": size, "trash_id": item_id}


def _undo_delete(space: _Workspace, done: Compensation) -> str:
    result = done.result
    if not isinstance(result, dict) or "trash_id" not in result:
        return "nothing to undo: the call deleted nothing"
    target, shown = space.locate(str(result["deleted"]))
    item_id = str(result["trash_id"])
    if space.trash.get(item_id) is None:
        if os.path.lexists(target):
            return f"already undone: {shown!r} is back"
        raise ToolError(
            f"cannot restore {shown!r}: the trash no longer holds item {item_id}; was it purged?"
        )
    with _os_errors(shown):
        space.trash.restore(item_id)
    return f"restored {shown!r} from the trash"
