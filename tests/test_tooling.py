"""The check command itself: an empty test run must fail, never pass."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_fails_when_no_test_is_collected() -> None:
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "test",
            "PYTEST_ARGS=-k no_such_test_anywhere -p no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "collected no tests" in done.stderr
