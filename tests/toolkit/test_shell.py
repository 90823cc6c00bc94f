"""shell: opt-in allowlist, argv without a shell, timeout with group kill, output cap."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from tether import ConfigurationError, Effect, Risk, ToolError
from tether.toolkit import shell_tool
from tether.tools import Tool


def run(tool: Tool, argv: list[str]) -> Any:
    return asyncio.run(tool.function(argv=argv))


@pytest.fixture
def sh(tmp_path: Path) -> Tool:
    return shell_tool(
        allowed_commands=["echo", "printf", "false", "ls", "pwd", "env", "sh", "seq", "cat"],
        cwd=tmp_path,
    )


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):
            return True
        time.sleep(0.02)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z"


# -- construction --------------------------------------------------------------------


def test_there_is_no_shell_without_an_allowlist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no default shell"):
        shell_tool(allowed_commands=[], cwd=tmp_path)


@pytest.mark.parametrize(
    ("allowed", "match"),
    [
        ("ls", "not a string"),
        (["/bin/ls"], "is a path"),
        (["./ls"], "is a path"),
        (["bin\\ls"], "is a path"),
        ([""], "not a command name"),
        ([" ls"], "not a command name"),
    ],
)
def test_allowlist_entries_must_be_bare_names(tmp_path: Path, allowed: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        shell_tool(allowed_commands=allowed, cwd=tmp_path)


def test_bad_cwd_and_limits_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        shell_tool(allowed_commands=["ls"], cwd=tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="not a folder"):
        shell_tool(allowed_commands=["ls"], cwd=tmp_path / "file")
    with pytest.raises(ConfigurationError, match="timeout"):
        shell_tool(allowed_commands=["ls"], cwd=tmp_path, timeout=0)
    with pytest.raises(ConfigurationError, match="max_output_bytes"):
        shell_tool(allowed_commands=["ls"], cwd=tmp_path, max_output_bytes=0)


def test_it_is_irreversible_and_at_most_once_by_default(sh: Tool, tmp_path: Path) -> None:
    assert (sh.name, sh.risk, sh.effect) == ("shell", Risk.IRREVERSIBLE, Effect.AT_MOST_ONCE)
    read_only = shell_tool(allowed_commands=["ls"], cwd=tmp_path, risk="read")
    assert (read_only.risk, read_only.effect) == (Risk.READ, Effect.READ)
    custom = shell_tool(allowed_commands=["ls"], cwd=tmp_path, risk="write", effect="idempotent")
    assert (custom.risk, custom.effect) == (Risk.WRITE, Effect.IDEMPOTENT)


def test_the_description_lists_the_allowed_commands(sh: Tool) -> None:
    assert "Allowed commands: cat, echo, env, false, ls, printf, pwd, seq, sh." in sh.description
    assert sh.definition.parameters["properties"]["argv"]["type"] == "array"


# -- running -------------------------------------------------------------------------


def test_a_command_runs_and_returns_its_output_and_status(sh: Tool) -> None:
    assert run(sh, ["echo", "hello", "world"]) == {
        "exit_code": 0,
        "stdout": "hello world\n",
        "stderr": "",
    }


def test_a_failing_command_is_a_result_not_an_error(sh: Tool) -> None:
    assert run(sh, ["false"])["exit_code"] == 1
    listed = run(sh, ["ls", "/definitely/not/here"])
    assert listed["exit_code"] != 0
    assert "not here" in listed["stderr"] or "No such file" in listed["stderr"]


def test_it_runs_in_cwd(sh: Tool, tmp_path: Path) -> None:
    assert run(sh, ["pwd"])["stdout"].strip() == str(tmp_path.resolve())


def test_stdin_is_empty(sh: Tool) -> None:
    assert run(sh, ["cat"]) == {"exit_code": 0, "stdout": "", "stderr": ""}


@pytest.mark.parametrize(
    "argument",
    [
        "; rm -rf /",
        "$(touch pwned)",
        "`touch pwned`",
        "a && touch pwned",
        "| touch pwned",
        "*",
        "'\"",
        "$HOME",
    ],
)
def test_arguments_are_passed_literally(sh: Tool, tmp_path: Path, argument: str) -> None:
    assert run(sh, ["printf", "%s", argument])["stdout"] == argument
    assert not (tmp_path / "pwned").exists()


def test_the_environment_is_not_leaked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    default = shell_tool(allowed_commands=["env"], cwd=tmp_path)
    output = run(default, ["env"])["stdout"]
    assert "sk-very-secret" not in output
    assert "PATH=" in output
    given = shell_tool(
        allowed_commands=["env"], cwd=tmp_path, env={"PATH": os.environ["PATH"], "ONLY": "this"}
    )
    assert run(given, ["env"])["stdout"].splitlines() == [f"PATH={os.environ['PATH']}", "ONLY=this"]


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "argv is empty"),
        (["rm", "-rf", "/"], "not allowed"),
        (["bash", "-c", "echo hi"], "not allowed"),
        (["/bin/echo", "hi"], "is a path"),
        (["./echo", "hi"], "is a path"),
        (["../../bin/echo"], "is a path"),
        (["ECHO", "hi"], "not allowed"),
        (["echo ", "hi"], "not allowed"),
        (["echo", "a\x00b"], "NUL"),
        (["echo hi"], "not allowed"),
    ],
)
def test_refused_commands(sh: Tool, argv: list[str], match: str) -> None:
    with pytest.raises(ToolError, match=match):
        run(sh, argv)


def test_an_allowed_command_missing_from_path_is_refused(tmp_path: Path) -> None:
    tool = shell_tool(allowed_commands=["no-such-program-xyz"], cwd=tmp_path)
    with pytest.raises(ToolError, match="not found on PATH"):
        run(tool, ["no-such-program-xyz"])


def test_a_program_planted_in_cwd_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "tool"
    planted.write_text("#!/bin/sh\necho planted\n")
    planted.chmod(planted.stat().st_mode | stat.S_IEXEC)
    tool = shell_tool(
        allowed_commands=["tool"], cwd=tmp_path, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    )
    with pytest.raises(ToolError, match="inside the working folder"):
        run(tool, ["tool"])


def test_a_relative_path_entry_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "tool"
    planted.write_text("#!/bin/sh\necho planted\n")
    planted.chmod(planted.stat().st_mode | stat.S_IEXEC)
    monkeypatch.chdir(tmp_path)
    tool = shell_tool(allowed_commands=["tool"], cwd=tmp_path, env={"PATH": "."})
    with pytest.raises(ToolError, match="relative PATH entry"):
        run(tool, ["tool"])


# -- limits --------------------------------------------------------------------------


def test_output_is_capped_with_a_marker(tmp_path: Path) -> None:
    tool = shell_tool(allowed_commands=["seq"], cwd=tmp_path, max_output_bytes=1000)
    result = run(tool, ["seq", "1", "100000"])
    total = sum(len(f"{i}\n") for i in range(1, 100_001))
    assert result["exit_code"] == 0
    kept, marker = result["stdout"].rsplit("\n[", 1)
    assert len(kept.encode()) == 1000
    assert marker == f"truncated at 1000 bytes; {total} bytes in all]"


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    tool = shell_tool(allowed_commands=["sh"], cwd=tmp_path, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"did not finish within 0\.5 s") as caught:
        run(tool, ["sh", "-c", "echo started; sleep 30"])
    assert time.monotonic() - started < 5
    assert caught.value.error_class == "tool_timeout"
    assert "started" in caught.value.message


def test_the_whole_process_group_is_killed(tmp_path: Path) -> None:
    tool = shell_tool(allowed_commands=["sh"], cwd=tmp_path, timeout=0.5)
    script = "sleep 30 & echo $! > child.pid; sleep 30 & wait"
    with pytest.raises(ToolError, match="killed"):
        run(tool, ["sh", "-c", script])
    child = int((tmp_path / "child.pid").read_text())
    assert gone(child)


def test_cancelling_the_call_kills_the_command(tmp_path: Path) -> None:
    tool = shell_tool(allowed_commands=["sh"], cwd=tmp_path, timeout=60)

    async def cancel_midway() -> None:
        task = asyncio.create_task(tool.function(argv=["sh", "-c", "echo $$ > pid; sleep 30"]))
        pid_file = tmp_path / "pid"
        for _ in range(500):  # up to 10 s for the shell to start
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert gone(int((tmp_path / "pid").read_text()))


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_a_signal_exit_is_reported_as_a_negative_code(sh: Tool) -> None:
    assert run(sh, ["sh", "-c", "kill -TERM $$"])["exit_code"] == -15
