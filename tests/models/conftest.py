from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.models.fault_server import FaultServer


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A running :class:`FaultServer` serving the default answer; it must log no errors."""
    with FaultServer() as server:
        yield server
    assert not server.errors, "\n".join(server.errors)
