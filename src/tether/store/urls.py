"""Store URLs: one string in settings, the CLI or ``TETHER_STORE`` picks the store.

Accepted forms (SQLAlchemy's convention for SQLite paths)::

    sqlite:///relative/path.db     a path relative to the working directory
    sqlite:////absolute/path.db    an absolute path (four slashes)
    ./runs.db, /var/lib/t.sqlite   a plain path ending in .db, .sqlite or .sqlite3
    memory://                      an InMemoryStore (nothing survives the process)
"""

from __future__ import annotations

import os

from tether.errors import ConfigurationError
from tether.store.base import Store
from tether.store.memory import InMemoryStore
from tether.store.sqlite import SqliteStore

__all__ = ["DEFAULT_STORE_PATH", "STORE_ENV_VAR", "open_store"]

STORE_ENV_VAR = "TETHER_STORE"
"""Environment variable read by :func:`open_store` when no URL is given."""

DEFAULT_STORE_PATH = "./.tether/tether.db"
"""SQLite file used when neither a URL nor ``TETHER_STORE`` is given (relative to the
working directory)."""

_SQLITE_PREFIX = "sqlite:///"
_MEMORY_URL = "memory://"
_PATH_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "a path ending in .db, .sqlite or .sqlite3, or memory://"
)


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, a plain path ending
            in ``.db``/``.sqlite``/``.sqlite3``, or ``memory://``. Default (``None``): the
            ``TETHER_STORE`` environment variable if set, else
            ``sqlite:///.tether/tether.db`` (created on first use).

    Raises:
        ConfigurationError: The URL has none of the accepted forms.
        SchemaVersionError: The SQLite file was written by a newer tether.
    """
    if url is None:
        from_env = os.environ.get(STORE_ENV_VAR)
        if not from_env:
            return SqliteStore(DEFAULT_STORE_PATH)
        url = from_env
    if url == _MEMORY_URL:
        return InMemoryStore()
    return SqliteStore(_sqlite_path(url))


def _sqlite_path(url: str) -> str:
    if url.startswith(_SQLITE_PREFIX):
        # After the third slash comes the path itself, so a fourth makes it absolute.
        path = url[len(_SQLITE_PREFIX) :]
        if path and "?" not in path:
            return path
    elif "://" not in url and url.lower().endswith(_PATH_SUFFIXES):
        return url
    raise ConfigurationError(f"unsupported store URL {url!r}; use {_ACCEPTED}")
