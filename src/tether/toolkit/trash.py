"""A trash folder: deletes that can be undone, and the last state of records.

:class:`Trash` moves files and directories aside into ``<root>/.tether-trash/<id>/``
instead of removing them, so a tool's ``compensate`` function (or a person) can put them
back. It also keeps copies (a file's content before an overwrite) and records (the last
state of anything JSON can describe, such as a database row).

Layout of one item::

    .tether-trash/<id>/meta.json     what it is, where it came from, when (written first)
    .tether-trash/<id>/payload       the file, directory or symlink itself, or
    .tether-trash/<id>/record.json   the record's data

Crash safety: ``meta.json`` is written atomically before the payload arrives, and the
payload arrives in one ``os.replace`` (within one file system). An item is in the trash
exactly when both exist, so an interrupted delete leaves the original in place and at
most an incomplete item that listings ignore and :meth:`Trash.purge` removes. Across file
systems the payload is copied under a temporary name, renamed into place, and only then
removed from its old place: a crash leaves it in the trash, or in both places.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from tether.clock import Clock, SystemClock
from tether.errors import ConfigurationError, ToolError
from tether.toolkit._atomic import (
    TEMP_MARKER,
    copy_entry,
    fsync_dir,
    move_entry,
    remove_entry,
    write_atomic,
)

__all__ = ["TRASH_DIRNAME", "Trash", "TrashError", "TrashItem", "TrashKind"]

TRASH_DIRNAME = ".tether-trash"
"""Name of the trash folder inside a :class:`Trash`'s root."""

_META = "meta.json"
_PAYLOAD = "payload"
_RECORD = "record.json"
_FORMAT = 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class TrashError(ToolError):
    """A trash operation was refused: no such item, or its original place is taken.

    A :class:`~tether.errors.ToolError`, so a tool or compensation that lets it through
    reports the message to the model (or to ``tether undo``).
    """

    error_class = "trash_error"


class TrashKind(StrEnum):
    """What a trash item holds."""

    FILE = "file"
    """A regular file."""
    DIRECTORY = "directory"
    """A directory tree (symlinks inside kept as links)."""
    SYMLINK = "symlink"
    """A symbolic link itself, not its target."""
    RECORD = "record"
    """The last state of a record, as JSON (see :meth:`Trash.delete_record`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrashItem:
    """One item in the trash."""

    id: str
    """The item's id: its folder name under ``.tether-trash``."""
    kind: TrashKind
    """What it holds."""
    deleted_at: datetime
    """When it was put in the trash (UTC)."""
    size: int
    """Bytes it holds: a file's size, the sum over a directory's files, a link's length,
    or the length of a record's JSON."""
    original_path: Path | None = None
    """Absolute path it was taken from; ``None`` for records."""
    record_kind: str | None = None
    """For records: the kind given to :meth:`Trash.delete_record` (such as ``"row"``)."""
    record_key: str | None = None
    """For records: the key given to :meth:`Trash.delete_record`."""
    run_id: str | None = None
    """The run that put it there, if any."""
    reason: str | None = None
    """Why it was put there, if said."""


class Trash:
    """A trash folder at ``root/.tether-trash``, created on first use.

    Args:
        root: The folder that holds the trash folder. Put it on the same file system as
            what you delete, so deletes are a single atomic rename.
        clock: Source of ``deleted_at`` times and of "now" for :meth:`purge`. Default:
            the system clock.
    """

    def __init__(self, root: Path, *, clock: Clock | None = None) -> None:
        self._root = Path(os.path.abspath(root))
        self._clock: Clock = clock if clock is not None else SystemClock()

    @property
    def path(self) -> Path:
        """The trash folder itself (``root/.tether-trash``)."""
        return self._root / TRASH_DIRNAME

    def delete(
        self,
        path: Path,
        *,
        run_id: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TrashItem:
        """Move a file, directory or symlink (the link, not its target) into the trash.

        Args:
            path: What to delete.
            run_id: The run deleting it, kept in the metadata. Default none.
            reason: Why, kept in the metadata. Default none.
            idempotency_key: Makes the delete repeatable: if an item with this key is
                already in the trash, it is returned and nothing else happens. Default
                none (every call makes a new item).

        Raises:
            TrashError: Nothing exists at ``path``, or it is (or holds) the trash folder.
        """
        return self._take(path, run_id, reason, idempotency_key, keep_original=False)

    def backup(
        self,
        path: Path,
        *,
        run_id: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TrashItem:
        """Put a copy of a file, directory or symlink in the trash, leaving it in place.

        Take one before overwriting something, so :meth:`restore` can bring it back.
        Arguments and errors as for :meth:`delete`.
        """
        return self._take(path, run_id, reason, idempotency_key, keep_original=True)

    def delete_record(
        self,
        kind: str,
        key: str,
        data: Any,
        *,
        run_id: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> TrashItem:
        """Keep the last state of a record, so a compensation can put it back.

        Args:
            kind: What sort of record it is (such as ``"customer"``); free text.
            key: Which record (such as its primary key); free text.
            data: Its last state; any value :func:`json.dumps` accepts (no NaN).
            run_id: The run deleting it. Default none.
            reason: Why. Default none.
            idempotency_key: As for :meth:`delete`. Default none.

        Raises:
            TrashError: ``data`` is not JSON-serialisable.
        """
        try:
            payload = json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise TrashError(f"record {kind}:{key} is not JSON-serialisable: {exc}") from None
        item_id, existing = self._claim_id(idempotency_key)
        if existing is not None:
            return existing
        item = TrashItem(
            id=item_id,
            kind=TrashKind.RECORD,
            deleted_at=self._clock.now(),
            size=len(payload),
            record_kind=kind,
            record_key=key,
            run_id=run_id,
            reason=reason,
        )
        folder = self._prepare(item)
        write_atomic(folder / _RECORD, payload)
        return item

    def get(self, item_id: str) -> TrashItem | None:
        """Return the item with this id, or ``None`` when the trash does not hold it."""
        folder = self._folder(item_id)
        if folder is None:
            return None
        return _load(folder)

    def find(self, idempotency_key: str) -> TrashItem | None:
        """Return the item put in the trash with this idempotency key, or ``None``."""
        return self.get(_keyed_id(idempotency_key))

    def restore(self, item_id: str, *, overwrite: bool = False) -> Path:
        """Put a file, directory or symlink back where it was; return that path.

        Missing parent folders are created. The item leaves the trash.

        Args:
            item_id: The item's id.
            overwrite: When something exists at the original path again, move it to the
                trash and restore over it (nothing is lost). Default ``False``: refuse.

        Raises:
            TrashError: No such item, the item is a record (use :meth:`restore_record`),
                or the original path exists again and ``overwrite`` is false.
        """
        item = self._require(item_id)
        if item.original_path is None:
            raise TrashError(f"trash item {item_id} is a record; use restore_record")
        target = item.original_path
        if os.path.lexists(target):
            if not overwrite:
                raise TrashError(
                    f"cannot restore trash item {item_id}: {target} exists again; "
                    "restore with overwrite=True to move it to the trash first"
                )
            self.delete(target, reason=f"replaced by restoring trash item {item_id}")
        target.parent.mkdir(parents=True, exist_ok=True)
        move_entry(self.path / item_id / _PAYLOAD, target)
        fsync_dir(target.parent)
        self._remove(item_id)
        return target

    def read_record(self, item_id: str) -> Any:
        """Return a record's data, leaving it in the trash.

        Raises:
            TrashError: No such item, or it is not a record.
        """
        item = self._require(item_id)
        if item.kind is not TrashKind.RECORD:
            raise TrashError(f"trash item {item_id} is a {item.kind.value}, not a record")
        return json.loads((self.path / item_id / _RECORD).read_bytes())

    def restore_record(self, item_id: str) -> Any:
        """Return a record's data and remove it from the trash.

        To keep it until the record is safely back, call :meth:`read_record`, put the
        record back, then :meth:`discard` the item.

        Raises:
            TrashError: No such item, or it is not a record.
        """
        data = self.read_record(item_id)
        self._remove(item_id)
        return data

    def discard(self, item_id: str) -> bool:
        """Remove one item for good; return whether the trash held it."""
        if self.get(item_id) is None:
            return False
        self._remove(item_id)
        return True

    def list(self) -> builtins.list[TrashItem]:
        """Return every item in the trash, newest first."""
        items = [item for _, item in self._scan() if item is not None]
        items.sort(key=lambda item: (item.deleted_at, item.id), reverse=True)
        return items

    def purge(self, older_than: timedelta) -> int:
        """Remove items put in the trash more than ``older_than`` ago; return how many.

        Leftovers of interrupted operations of that age go too (they are not counted).

        Args:
            older_than: Minimum age; ``timedelta(0)`` empties the trash.

        Raises:
            ConfigurationError: ``older_than`` is negative.
        """
        if older_than < timedelta(0):
            raise ConfigurationError("purge: older_than must not be negative")
        cutoff = self._clock.now() - older_than
        removed = 0
        for folder, item in self._scan():
            if item is not None:
                if item.deleted_at <= cutoff:
                    self._remove(folder.name)
                    removed += 1
                continue
            meta = _read_meta(folder)
            if meta is not None and meta["deleted_at"] <= cutoff:
                self._remove(folder.name)
        if self.path.is_dir():
            for leftover in self.path.glob(".gone-*"):
                remove_entry(leftover)
        return removed

    # -- internals ---------------------------------------------------------------------

    def _take(
        self,
        path: Path,
        run_id: str | None,
        reason: str | None,
        idempotency_key: str | None,
        *,
        keep_original: bool,
    ) -> TrashItem:
        item_id, existing = self._claim_id(idempotency_key)
        if existing is not None:
            return existing
        source = _absolute(path)
        if not os.path.lexists(source):
            raise TrashError(f"nothing to delete at {source}")
        trash = self.path
        if _within(source, trash) or _within(trash, source):
            raise TrashError(f"{source} is or holds the trash folder; it cannot be trashed")
        item = TrashItem(
            id=item_id,
            kind=_kind_of(source),
            deleted_at=self._clock.now(),
            size=_size_of(source),
            original_path=source,
            run_id=run_id,
            reason=reason,
        )
        folder = self._prepare(item)
        payload = folder / _PAYLOAD
        if keep_original:
            partial = folder / f".{_PAYLOAD}{TEMP_MARKER}{secrets.token_hex(4)}"
            try:
                copy_entry(source, partial)
                os.replace(partial, payload)
            except BaseException:
                remove_entry(partial)
                raise
        else:
            move_entry(source, payload)
            fsync_dir(source.parent)
        fsync_dir(folder)
        return item

    def _claim_id(self, idempotency_key: str | None) -> tuple[str, TrashItem | None]:
        if idempotency_key is None:
            return _new_id(self._clock.now()), None
        item_id = _keyed_id(idempotency_key)
        return item_id, self.get(item_id)

    def _prepare(self, item: TrashItem) -> Path:
        """Create the item's folder and its metadata; the payload comes after."""
        self.path.mkdir(parents=True, exist_ok=True)
        folder = self.path / item.id
        folder.mkdir(exist_ok=True)
        write_atomic(folder / _META, _dump_meta(item))
        fsync_dir(self.path)
        return folder

    def _folder(self, item_id: str) -> Path | None:
        if not _ID.fullmatch(item_id):
            return None
        folder = self.path / item_id
        return folder if folder.is_dir() else None

    def _require(self, item_id: str) -> TrashItem:
        item = self.get(item_id)
        if item is None:
            raise TrashError(f"the trash holds no item {item_id!r}")
        return item

    def _remove(self, item_id: str) -> None:
        """Take the folder out of sight in one rename, then delete it."""
        folder = self.path / item_id
        gone = self.path / f".gone-{item_id}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, gone)
        except FileNotFoundError:
            return
        fsync_dir(self.path)
        remove_entry(gone)

    def _scan(self) -> builtins.list[tuple[Path, TrashItem | None]]:
        """Every item folder, with its item (``None`` when incomplete or unreadable)."""
        if not self.path.is_dir():
            return []
        found: builtins.list[tuple[Path, TrashItem | None]] = []
        for folder in self.path.iterdir():
            if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
                continue
            found.append((folder, _load(folder)))
        return found


def _new_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def _keyed_id(idempotency_key: str) -> str:
    return "k-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def _absolute(path: Path) -> Path:
    """An absolute path with its parent's symlinks resolved, and the last part kept."""
    absolute = Path(os.path.abspath(path))
    return absolute.parent.resolve() / absolute.name


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _kind_of(path: Path) -> TrashKind:
    if path.is_symlink():
        return TrashKind.SYMLINK
    return TrashKind.DIRECTORY if path.is_dir() else TrashKind.FILE


def _size_of(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _dump_meta(item: TrashItem) -> bytes:
    meta = {
        "format": _FORMAT,
        "id": item.id,
        "kind": item.kind.value,
        "original_path": None if item.original_path is None else str(item.original_path),
        "record_kind": item.record_kind,
        "record_key": item.record_key,
        "deleted_at": item.deleted_at.isoformat(),
        "size": item.size,
        "run_id": item.run_id,
        "reason": item.reason,
    }
    return json.dumps(meta, ensure_ascii=False, indent=2).encode()


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / _META).read_bytes())
        meta["deleted_at"] = datetime.fromisoformat(meta["deleted_at"])
        meta["kind"] = TrashKind(meta["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(meta, dict) or meta.get("id") != folder.name:
        return None
    return meta


def _load(folder: Path) -> TrashItem | None:
    """The item in ``folder``, or ``None`` unless its metadata and payload are both there."""
    meta = _read_meta(folder)
    if meta is None:
        return None
    kind: TrashKind = meta["kind"]
    payload = folder / (_RECORD if kind is TrashKind.RECORD else _PAYLOAD)
    if not os.path.lexists(payload):
        return None
    original = meta.get("original_path")
    return TrashItem(
        id=meta["id"],
        kind=kind,
        deleted_at=meta["deleted_at"],
        size=int(meta.get("size", 0)),
        original_path=None if original is None else Path(original),
        record_kind=meta.get("record_kind"),
        record_key=meta.get("record_key"),
        run_id=meta.get("run_id"),
        reason=meta.get("reason"),
    )
