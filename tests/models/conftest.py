from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.fault_server import FaultServer

SERVER_START_TIMEOUT_S = 60.0


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A running :class:`FaultServer` serving the default answer; it must log no errors."""
    with FaultServer() as server:
        yield server
    assert not server.errors, "\n".join(server.errors)


def require_local_model() -> Path:
    """Return the SmolLM2 GGUF file, or skip the test when llama.cpp or the file is missing.

    In CI (``CI`` set) a missing piece FAILS the test instead: the local-model tests must
    never pass there by not running.
    """
    from tether.errors import ConfigurationError
    from tether.models.local import locate_model_file

    problem: str | None = None
    path: Path | None = None
    if importlib.util.find_spec("llama_cpp") is None:
        problem = "llama-cpp-python is not installed (make setup installs the local extra)"
    else:
        try:
            path = locate_model_file()
        except ConfigurationError as exc:
            problem = str(exc)
    if problem is not None or path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the local model: {problem}", pytrace=False)
        pytest.skip(problem or "no local model")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """A real ``llama_cpp.server`` serving SmolLM2 on a free loopback port.

    Yields its API root, ``http://127.0.0.1:PORT/v1``. Started once per session and
    stopped (SIGTERM, then SIGKILL) at its end.
    """
    model_file = require_local_model()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--chat_format",
        "chatml-function-calling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
    ]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _answers(f"{base_url}/models"):
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr.seek(0)
                    log = stderr.read().decode(errors="replace")[-4000:]
                    why = (
                        f"exited with {process.returncode}"
                        if process.returncode is not None
                        else f"did not answer within {SERVER_START_TIMEOUT_S:.0f} s"
                    )
                    pytest.fail(f"llama_cpp.server {why}; its stderr:\n{log}", pytrace=False)
                time.sleep(0.2)
            yield base_url
        finally:
            _stop(process)
