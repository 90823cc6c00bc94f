"""open_store: URLs, plain paths, the environment variable and the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ConfigurationError
from tether.store import InMemoryStore, SqliteStore, Store, open_store


async def opened(url: str | None) -> Store:
    store = open_store(url)
    await store.close()
    return store


@pytest.mark.anyio
async def test_memory() -> None:
    assert isinstance(await opened("memory://"), InMemoryStore)


@pytest.mark.anyio
async def test_relative_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = await opened("sqlite:///data/runs.db")
    assert isinstance(store, SqliteStore)
    assert store.path == Path("data/runs.db")
    assert (tmp_path / "data" / "runs.db").is_file()


@pytest.mark.anyio
async def test_absolute_sqlite_url(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "runs.db"
    store = await opened(f"sqlite:///{target}")  # target starts with "/": four slashes
    assert isinstance(store, SqliteStore) and store.path == target
    assert target.is_file()


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["t.db", "t.sqlite", "t.sqlite3", "T.DB"])
async def test_plain_paths(tmp_path: Path, name: str) -> None:
    store = await opened(str(tmp_path / name))
    assert isinstance(store, SqliteStore)
    assert (tmp_path / name).is_file()


@pytest.mark.anyio
async def test_default_is_a_file_under_dot_tether(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_STORE", raising=False)
    store = await opened(None)
    assert isinstance(store, SqliteStore)
    assert (tmp_path / ".tether" / "tether.db").is_file()


@pytest.mark.anyio
async def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_STORE", "memory://")
    assert isinstance(await opened(None), InMemoryStore)
    monkeypatch.setenv("TETHER_STORE", f"sqlite:///{tmp_path}/env.db")
    assert isinstance(await opened(None), SqliteStore)
    assert (tmp_path / "env.db").is_file()
    # An explicit URL wins over the environment.
    assert isinstance(await opened("memory://"), InMemoryStore)


@pytest.mark.anyio
async def test_bad_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_STORE", "redis://localhost")
    with pytest.raises(ConfigurationError, match="redis://localhost"):
        open_store(None)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost/tether",
        "sqlite://relative.db",
        "sqlite:///",
        "sqlite:///t.db?mode=ro",
        "memory:",
        "runs.txt",
        "",
    ],
)
def test_unsupported_urls_say_what_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as raised:
        open_store(url)
    message = str(raised.value)
    assert repr(url) in message
    for form in ("sqlite:///", "sqlite:////", ".db", "memory://"):
        assert form in message
    assert list(tmp_path.iterdir()) == []
