"""Crash-safe file primitives shared by the trash and the workspace tools.

A file is written to a temporary sibling, flushed to disk, then renamed over its target
with :func:`os.replace`, so a reader (or a process restarted after a crash) sees the old
file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["TEMP_MARKER", "copy_entry", "fsync_dir", "move_entry", "remove_entry", "write_atomic"]

TEMP_MARKER = ".tether-tmp-"
"""Part of the name of every temporary file written here, so leftovers are recognisable."""


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (temporary sibling, fsync, ``os.replace``).

    Args:
        path: The file to write. Its directory must exist.
        data: The whole new content.
        mode: Permission bits for the new file. Default: those of the file it replaces, or
            the process default for a new file.
    """
    if mode is None:
        with contextlib.suppress(FileNotFoundError):
            mode = path.stat().st_mode & 0o7777
    temp = path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def move_entry(source: Path, destination: Path) -> None:
    """Move a file, symlink or directory; atomic within one file system.

    Across file systems (``EXDEV``) the entry is copied to a temporary sibling of
    ``destination``, renamed into place, and only then removed from ``source``: a crash
    leaves it at ``source``, or at both places, never at neither.
    """
    try:
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        return
    partial = destination.with_name(f".{destination.name}{TEMP_MARKER}{secrets.token_hex(4)}")
    try:
        copy_entry(source, partial)
        os.replace(partial, destination)
    except BaseException:
        remove_entry(partial)
        raise
    remove_entry(source)


def copy_entry(source: Path, destination: Path) -> None:
    """Copy a file, symlink (as a link) or directory tree (links kept as links)."""
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        shutil.copytree(source, destination, symlinks=True)
    else:
        shutil.copy2(source, destination)
        with open(destination, "rb") as handle:
            os.fsync(handle.fileno())


def remove_entry(path: Path) -> None:
    """Remove a file, symlink or directory tree; nothing happens if it does not exist."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)
