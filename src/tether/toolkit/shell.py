"""``shell``: run one allowlisted command, never through a shell.

There is no default-enabled shell: :func:`shell_tool` needs an explicit, non-empty list of
command names. The model gives an argv list; ``argv[0]`` must be one of those names (a
bare name, never a path) and is looked up on ``PATH``. Every argument reaches the program
literally (no shell: ``;``, ``|``, ``$()``, quotes and globs mean nothing). The command
runs in its own process group with no standard input, is killed with its whole group when
it passes the timeout, and its output is cut at a byte cap with a marker.

What the command itself does once it runs is up to the command: allow only programs whose
every option you are willing to let the model use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from tether.errors import ConfigurationError, ToolError
from tether.tools import Effect, Risk, Tool, tool

__all__ = ["PASSED_ENV", "shell_tool"]

PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
"""Environment variables a command inherits by default; the rest (API keys included) are
not passed on."""
_CHUNK = 65536


def shell_tool(
    *,
    allowed_commands: Collection[str],
    cwd: Path,
    timeout: float = 30.0,
    max_output_bytes: int = 100_000,
    risk: Risk | str = Risk.IRREVERSIBLE,
    effect: Effect | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Tool:
    """Build the ``shell`` tool: run one allowlisted command as an argv list, no shell.

    The tool returns ``{"exit_code": int, "stdout": str, "stderr": str}``; a non-zero exit
    is a result, not an error (a negative code is the signal that ended it). Output is
    decoded as UTF-8 (invalid bytes replaced).

    Args:
        allowed_commands: Bare command names the model may run (``"git"``, ``"ls"``);
            looked up on ``PATH``. Must not be empty; no paths.
        cwd: Working folder of every command; it must exist.
        timeout: Seconds a command may run before it and its process group are killed
            (``SIGKILL``). Default 30.
        max_output_bytes: Bytes kept of stdout and, separately, of stderr; the rest is
            read and dropped, and a ``[truncated at N bytes ...]`` marker says so.
            Default 100,000.
        risk: Declared risk. Default ``irreversible``: a command can do anything its
            program can.
        effect: Declared effect. Default ``at_most_once`` (``read`` if ``risk`` is
            ``read``): never repeated after a crash without a person's decision.
        env: The commands' whole environment. Default: the variables in
            :data:`PASSED_ENV` taken from this process.

    Raises:
        ConfigurationError: ``allowed_commands`` is empty or holds a path or blank name,
            ``cwd`` is not a folder, or ``timeout`` or ``max_output_bytes`` is not positive.
    """
    names = _allowed_names(allowed_commands)
    try:
        folder = Path(cwd).resolve(strict=True)
    except OSError as exc:
        raise ConfigurationError(f"shell_tool: cwd {cwd} does not exist: {exc}") from None
    if not folder.is_dir():
        raise ConfigurationError(f"shell_tool: cwd {cwd} is not a folder")
    if timeout <= 0:
        raise ConfigurationError("shell_tool: timeout must be positive")
    if max_output_bytes <= 0:
        raise ConfigurationError("shell_tool: max_output_bytes must be positive")
    child_env = dict(env) if env is not None else _inherited_env()
    listed = ", ".join(sorted(names))
    description = (
        f"Run one command without a shell and return its exit code, stdout and stderr. "
        f"Allowed commands: {listed}. Give the command and each argument as separate "
        "list items; shell syntax (quotes, pipes, ';', '$', globs) is not interpreted."
    )

    @tool(name="shell", risk=risk, effect=effect, description=description)
    async def shell(argv: list[str]) -> dict[str, Any]:
        """Run one command.

        Args:
            argv: The command name and its arguments, one list item each, such as
                ["ls", "-l", "src"].
        """
        program = _program(argv, names, child_env, folder)
        return await _run(argv, program, folder, child_env, timeout, max_output_bytes)

    return shell


def _allowed_names(allowed: Collection[str]) -> frozenset[str]:
    if isinstance(allowed, str):
        raise ConfigurationError("allowed_commands must be a collection of names, not a string")
    names = frozenset(allowed)
    if not names:
        raise ConfigurationError(
            "shell_tool needs at least one allowed command; there is no default shell"
        )
    for name in names:
        if not name.strip() or name != name.strip() or "\x00" in name:
            raise ConfigurationError(f"allowed command {name!r} is not a command name")
        if "/" in name or "\\" in name:
            raise ConfigurationError(
                f"allowed command {name!r} is a path; give bare names (looked up on PATH)"
            )
    return names


def _inherited_env() -> dict[str, str]:
    return {key: os.environ[key] for key in PASSED_ENV if key in os.environ}


def _program(argv: list[str], names: frozenset[str], env: Mapping[str, str], cwd: Path) -> str:
    """Check ``argv`` and return the absolute path of the program to run."""
    if not argv:
        raise ToolError("argv is empty; give the command name and its arguments")
    if any("\x00" in arg for arg in argv):
        raise ToolError("an argument contains a NUL byte; it is refused")
    name = argv[0]
    if "/" in name or "\\" in name:
        raise ToolError(
            f"command {name[:100]!r} is a path; give the bare command name "
            f"(allowed: {', '.join(sorted(names))})"
        )
    if name not in names:
        raise ToolError(
            f"command {name[:100]!r} is not allowed; allowed: {', '.join(sorted(names))}"
        )
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise ToolError(f"command {name!r} is allowed but was not found on PATH")
    program = Path(found)
    if not program.is_absolute():
        raise ToolError(f"command {name!r} was found only through a relative PATH entry")
    real = program.resolve()
    if real == cwd or cwd in real.parents:
        raise ToolError(f"command {name!r} resolves inside the working folder; it is refused")
    return str(program)


class _Capture:
    """The first ``limit`` bytes of one output stream, and how many bytes came in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.total > self.limit:
            text += f"\n[truncated at {self.limit} bytes; {self.total} bytes in all]"
        return text


async def _run(
    argv: list[str],
    program: str,
    cwd: Path,
    env: Mapping[str, str],
    seconds: float,
    limit: int,
) -> dict[str, Any]:
    try:
        process = await asyncio.create_subprocess_exec(
            argv[0],
            *argv[1:],
            executable=program,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as exc:
        raise ToolError(f"command {argv[0]!r} could not start: {exc.strerror}") from None
    out, err = _Capture(limit), _Capture(limit)
    try:
        async with asyncio.timeout(seconds):
            await asyncio.gather(out.drain(process.stdout), err.drain(process.stderr))
            code = await process.wait()
    except TimeoutError:
        _kill_group(process.pid)
        await process.wait()
        so_far = out.text()[:500]
        raise ToolError(
            f"command {argv[0]!r} did not finish within {seconds:g} s and was killed"
            + (f"; its output so far: {so_far}" if so_far else ""),
            error_class="tool_timeout",
        ) from None
    finally:
        if process.returncode is None:  # cancelled: the run itself is stopping
            _kill_group(process.pid)
            with contextlib.suppress(asyncio.CancelledError):
                await process.wait()
    return {"exit_code": code, "stdout": out.text(), "stderr": err.text()}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
