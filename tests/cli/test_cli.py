"""The tether command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import RunStatus, __version__
from tether.cli.main import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
TETHER = [sys.executable, "-m", "tether"]


def tether(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    environment.update(env)
    return subprocess.run(
        [*TETHER, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


def write_agent(tmp_path: Path, script: str, **limits: object) -> Path:
    path = tmp_path / "agent_file.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from decimal import Decimal
            from tether import Agent, ModelError, ModelResponse, RunLimits, tool
            from tether.testing import ScriptedModel, call

            @tool
            def add(a: int, b: int) -> int:
                \"\"\"Add.\"\"\"
                return a + b

            agent = Agent(
                name="cli-test",
                model=ScriptedModel({script}),
                tools=[add],
                limits=RunLimits(**{limits!r}),
            )
            not_an_agent = 42
            """
        )
    )
    return path


def test_quickstart_prints_timeline_and_summary() -> None:
    done = tether("run", "examples/quickstart.py:agent", "What is 1 + 2?")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "add" in lines[0] and "→" in lines[0]
    assert "✓ add 3" in lines[1]
    assert "completed · 3 steps · 1 tool calls · 0 tokens · $0" in done.stdout
    assert lines[-1] == "The sum is 3."


def test_json_prints_one_object_with_the_result_fields() -> None:
    done = tether("run", "examples/quickstart.py:agent", "What is 1 + 2?", "--json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert set(result) >= {
        "run_id",
        "status",
        "output",
        "error",
        "steps",
        "usage",
        "cost_usd",
        "degraded",
        "started_at",
        "finished_at",
    }
    assert result["status"] == "completed" and result["output"] == "The sum is 3."
    assert result["steps"] == 3 and result["cost_usd"] == "0"


@pytest.mark.parametrize(
    ("script", "limits", "status"),
    [
        ('["fine"]', {}, RunStatus.COMPLETED),
        ('[ModelError("down")]', {}, RunStatus.FAILED),
        (
            '[call("add", {"a": i, "b": 0}) for i in range(9)]',
            {"max_steps": 2},
            RunStatus.MAX_STEPS,
        ),
        (
            '[call("add", {"a": i, "b": 0}) for i in range(9)]',
            {"max_tool_calls": 1},
            RunStatus.TOOL_CALL_LIMIT,
        ),
        (
            '[ModelResponse(text="x", cost_usd=Decimal(2))]',
            {"max_cost_usd": 1},
            RunStatus.BUDGET_EXCEEDED,
        ),
    ],
)
def test_exit_code_per_status(tmp_path: Path, script: str, limits: dict, status: RunStatus) -> None:
    path = write_agent(tmp_path, script, **limits)
    done = tether("run", f"{path}:agent", "go", "--json")
    assert json.loads(done.stdout)["status"] == status.value
    assert done.returncode == EXIT_CODES[status]


def test_exit_codes_are_distinct_for_terminal_statuses() -> None:
    terminal = [s for s in RunStatus if s.is_terminal]
    codes = [EXIT_CODES[s] for s in terminal]
    assert len(set(codes)) == len(codes)
    assert EXIT_CODES[RunStatus.COMPLETED] == 0
    assert 2 not in codes, "2 is kept for usage errors"
    assert set(EXIT_CODES) == set(RunStatus)


def test_module_reference(tmp_path: Path) -> None:
    write_agent(tmp_path, '["from a module"]')
    done = tether("run", "agent_file:agent", "go", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from a module" in done.stdout


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "must look like"),
        ("missing.py:agent", "no such file"),
        ("no_such_module_xyz:agent", "cannot import module"),
        ("{path}:nothing", "has no attribute"),
        ("{path}:not_an_agent", "not a tether Agent"),
    ],
)
def test_bad_references_exit_2_with_a_clear_message(
    tmp_path: Path, reference: str, message: str
) -> None:
    path = write_agent(tmp_path, '["x"]')
    done = tether("run", reference.format(path=path), "go")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_file_that_raises_on_import_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('import-time failure')\n")
    done = tether("run", f"{path}:agent", "go")
    assert done.returncode == 2
    assert "import-time failure" in done.stderr


def test_version() -> None:
    done = tether("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"tether {__version__}"


def test_no_color_is_honoured() -> None:
    coloured = tether("run", "examples/quickstart.py:agent", "x", FORCE_COLOR="1")
    plain = tether("run", "examples/quickstart.py:agent", "x", FORCE_COLOR="1", NO_COLOR="1")
    assert "\x1b[32m" in coloured.stdout
    assert "\x1b[32m" not in plain.stdout and "\x1b[31m" not in plain.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "tether"
    assert script.exists()
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("tether ")


def test_an_internal_failure_exits_70_with_a_traceback(monkeypatch) -> None:
    from typer.testing import CliRunner

    from tether.cli.main import INTERNAL_ERROR, app
    from tether.runtime import Tether

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store is on fire")

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(Tether, "run", broken)
    done = CliRunner().invoke(app, ["run", "examples/quickstart.py:agent", "x"])
    assert done.exit_code == INTERNAL_ERROR
    assert "internal error" in done.output
    assert "store is on fire" in done.output


def test_the_summary_says_what_tether_caught_and_where_the_journal_is(tmp_path: Path) -> None:
    script = (
        '[call("add", {"a": "one", "b": 2}), call("nope", {}), call("add", {"a": 1, "b": 2}),'
        ' call("add", {"a": 1, "b": 2}), "3"]'
    )
    agent = write_agent(tmp_path, script)
    database = tmp_path / "runs.db"
    done = tether("run", f"{agent}:agent", "add", "--store", f"sqlite:///{database}")
    assert done.returncode == 0, done.stderr
    caught = next(line for line in done.stdout.splitlines() if line.startswith("tether caught"))
    assert "1 invalid arguments" in caught
    assert "1 calls to unknown tools" in caught
    assert "1 repeated calls" in caught
    run_id = json.loads(tether("runs", "--json", "--store", f"sqlite:///{database}").stdout)[0][
        "run_id"
    ]
    assert f"journal: {database}" in done.stdout
    assert f"next: tether show {run_id} · tether resume {run_id}" in done.stdout


def test_a_clean_run_in_memory_prints_no_caught_line_and_no_journal() -> None:
    done = tether("run", "examples/quickstart.py:agent", "What is 1 + 2?", TETHER_STORE="memory://")
    assert done.returncode == 0, done.stderr
    assert "tether caught" not in done.stdout and "journal:" not in done.stdout


def test_the_timeline_names_reused_and_fallback_results() -> None:
    from datetime import UTC, datetime
    from io import StringIO

    from rich.console import Console

    from tether.cli.timeline import Timeline
    from tether.events import ToolCallFinished

    out = StringIO()
    timeline = Timeline(Console(file=out, no_color=True, width=200))
    common = {
        "run_id": "r",
        "call_id": "c",
        "content": "ok",
        "is_error": False,
        "error_class": None,
        "repeated": False,
        "at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    timeline(ToolCallFinished(step=2, tool="pay", executed=False, dedupe_of="run_a", **common))
    timeline(ToolCallFinished(step=4, tool="search", executed=True, tier="cached", **common))
    lines = out.getvalue().splitlines()
    assert "(reused from run_a)" in lines[0] and "(served by cached)" in lines[1]
    assert timeline.caught == {
        "calls answered from another run": 1,
        "results from a fallback tool": 1,
    }
