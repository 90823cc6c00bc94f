"""The durable commands (run, submit, worker, resume, review, cancel, runs, show, prune)
as real processes sharing a SQLite store.

Crashes are real: a ``tether worker`` with a one-second lease runs an agent whose tool
blocks on its first execution (see :mod:`tests.cli.agents_for_cli`); the test waits until
the tool has started (its intent is journaled), then SIGKILLs the worker and waits for the
lease to lapse.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tether import RunStatus
from tether.cli.common import EXIT_CODES, USAGE_ERROR
from tether.events import Event, ReviewDecided, RunFinished, ToolCallStarted
from tether.store import RunRecord, SqliteStore

ROOT = Path(__file__).resolve().parents[2]
TETHER = [sys.executable, "-m", "tether"]
AGENTS = "tests.cli.agents_for_cli"
AGENTS_FILE = Path(__file__).with_name("agents_for_cli.py")
RUN_ID = re.compile(r"run_[0-9a-f]{32}")
LEASE = "1"  # seconds: the shortest lease `tether worker` accepts

_T = TypeVar("_T")


def base_env(**extra: str) -> dict[str, str]:
    drop = ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TETHER_STORE", "TETHER_FAILPOINTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


class Cli:
    """Runs ``python -m tether`` from the repository root against one SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.db = directory / "runs.db"
        self.url = f"sqlite:///{self.db}"  # the path is absolute: four slashes
        self.env = base_env(TETHER_STORE=self.url)

    def __call__(
        self, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TETHER, *args],
            cwd=cwd,
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*TETHER, *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def many(self, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands at the same time."""
        started = [(command, self.popen(*command)) for command in commands]
        done = []
        for command, process in started:
            out, err = process.communicate(timeout=60)
            done.append(subprocess.CompletedProcess(command, process.returncode, out, err))
        return done

    def submit(self, agent: str, task: str, *args: str) -> str:
        run_id = self.ok("submit", f"{AGENTS}:{agent}", task, *args).stdout.strip()
        assert RUN_ID.fullmatch(run_id), run_id
        return run_id

    def run_json(self, agent: str, task: str = "x") -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self.ok("run", f"{AGENTS}:{agent}", task, "--json").stdout
        )
        return result

    def runs(self, *args: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = json.loads(self.ok("runs", "--json", *args).stdout)
        return records

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        lines = self.ok("show", run_id, "--json").stdout.splitlines()
        return [json.loads(line) for line in lines]

    # Checks of what the commands left behind read the store directly (faster than a
    # process per check).

    def _read(self, action: Callable[[SqliteStore], Awaitable[_T]]) -> _T:
        async def read() -> _T:
            store = SqliteStore(self.db)
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(read())

    def stored(self, run_id: str) -> RunRecord:
        record = self._read(lambda store: store.get_run(run_id))
        assert record is not None, f"no run {run_id} in the store"
        return record

    def events(self, run_id: str) -> list[Event]:
        return list(self._read(lambda store: store.events(run_id)))

    def kinds(self, run_id: str) -> list[str]:
        return [e.kind for e in self.events(run_id)]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout: float = 20,
    process: subprocess.Popen[str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process died waiting for {what}: {out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


@dataclass
class Blocked:
    """A live worker whose runs are all blocked inside their first tool call."""

    cli: Cli
    worker: subprocess.Popen[str]
    run_ids: list[str]
    ledgers: list[Path]

    def kill(self) -> None:
        """SIGKILL the worker, then wait until the leases it held have lapsed."""
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.communicate(timeout=10)
        assert self.worker.returncode == -signal.SIGKILL

        async def expiries() -> list[datetime]:
            store = SqliteStore(self.cli.db)
            try:
                records = [await store.get_run(r) for r in self.run_ids]
            finally:
                await store.close()
            found = []
            for record in records:
                assert record is not None and record.status is RunStatus.RUNNING
                assert record.lease_expires_at is not None, "the dead worker held a lease"
                found.append(record.lease_expires_at)
            return found

        lapse = max(asyncio.run(expiries()))
        time.sleep(max(0.0, (lapse - datetime.now(UTC)).total_seconds()) + 0.1)


@contextmanager
def blocked_runs(
    cli: Cli, agent: str, count: int = 1, *, until_idle: bool = False
) -> Iterator[Blocked]:
    """Submit ``count`` runs of ``agent`` and start a worker that blocks in all of them."""
    ledgers = [cli.dir / f"ledger-{i}.txt" for i in range(count)]
    run_ids = [cli.submit(agent, str(ledger)) for ledger in ledgers]
    args = ["worker", "--lease", LEASE, "--poll", "0.05", "--concurrency", str(count)]
    worker = cli.popen(*args, *(["--until-idle"] if until_idle else []))
    try:
        wait_until(
            lambda: all(ledger.exists() for ledger in ledgers),
            "the tools to start",
            process=worker,
        )
        yield Blocked(cli, worker, run_ids, ledgers)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)


def interrupted(cli: Cli, agent: str, count: int = 1) -> Blocked:
    """Runs whose worker was killed inside their first tool call, leases lapsed."""
    with blocked_runs(cli, agent, count) as blocked:
        blocked.kill()
    return blocked


def in_review(cli: Cli) -> tuple[str, Path]:
    """A run whose at-most-once call was interrupted, resumed to ``needs_review``."""
    blocked = interrupted(cli, "slow_once")
    (run_id,), (ledger,) = blocked.run_ids, blocked.ledgers
    done = cli("resume", run_id)
    assert done.returncode == EXIT_CODES[RunStatus.NEEDS_REVIEW], done.stderr
    return run_id, ledger


# --- run, runs, show ---------------------------------------------------------------------


def test_run_is_journaled_listed_and_shown(cli: Cli) -> None:
    # The flag names the store; TETHER_STORE (memory) must not be used instead.
    env = base_env(TETHER_STORE="memory://")
    store = ("--store", cli.url)
    agent = f"{AGENTS}:hello"
    done = cli("run", agent, "hi there", *store, env=env)
    assert done.returncode == 0, done.stderr
    (run_id,) = re.findall(r"^run (run_[0-9a-f]{32})$", done.stdout, re.MULTILINE)

    listed = json.loads(cli("runs", "--json", *store, env=env).stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    (record,) = listed
    assert record["status"] == "completed"
    assert record["agent"] == "cli-hello" and record["agent_ref"] == agent
    assert record["task"] == "hi there" and record["user"] is None
    assert record["finished_at"] is not None and record["lease_owner"] is None

    shown = cli("show", run_id, "--json", *store, env=env)
    assert shown.returncode == 0, shown.stderr
    journal = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["kind"] for e in journal] == [
        "run_started",
        "model_responded",
        "tool_call_started",
        "tool_call_finished",
        "model_responded",
        "run_finished",
    ]
    assert {e["run_id"] for e in journal} == {run_id}
    assert journal[0]["task"] == "hi there" and journal[0]["agent_ref"] == agent
    assert journal[-1]["status"] == "completed"
    assert journal[-1]["output"] == "finished; the tool said: echo hi there"
    assert record["events"] == len(journal)

    readable = cli("show", run_id, *store, env=env)
    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert lines[0] == f"cli-hello · hi there · user - · {run_id}"
    assert any("  1 model " in line for line in lines)
    assert any("  2 echo(" in line for line in lines)
    assert any("✓ echo hi there" in line for line in lines)
    assert any("completed" in line for line in lines[:-1]), "the tree ends with the status"
    assert lines[-1] == "completed · 6 events · attempts 0 · owner -"


def test_default_store_is_dot_tether_in_the_working_directory(tmp_path: Path) -> None:
    env = base_env()  # neither --store nor TETHER_STORE
    agent = f"{AGENTS_FILE}:hello"
    done = subprocess.run(
        [*TETHER, "run", agent, "hi", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert (tmp_path / ".tether" / "tether.db").is_file()

    cli = Cli(tmp_path)
    listed = json.loads(cli("runs", "--json", cwd=tmp_path, env=env).stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    explicit = f"sqlite:///{tmp_path / '.tether' / 'tether.db'}"
    elsewhere = json.loads(cli("runs", "--json", "--store", explicit, env=env).stdout)
    assert [r["run_id"] for r in elsewhere] == [run_id]


@pytest.mark.parametrize(
    ("flag", "env_store", "created", "not_created"),
    [
        ("sqlite:///rel/relative.db", None, "rel/relative.db", None),
        ("plain.db", None, "plain.db", None),
        ("other.sqlite3", None, "other.sqlite3", None),
        (None, "sqlite:///from_env.db", "from_env.db", None),
        ("sqlite:///flag.db", "sqlite:///from_env.db", "flag.db", "from_env.db"),
    ],
)
def test_store_urls(
    tmp_path: Path, flag: str | None, env_store: str | None, created: str, not_created: str | None
) -> None:
    env = base_env(**({} if env_store is None else {"TETHER_STORE": env_store}))
    args = [*TETHER, "run", f"{AGENTS_FILE}:hello", "hi", "--json"]
    if flag is not None:
        args += ["--store", flag]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert (tmp_path / created).is_file()
    assert not (tmp_path / ".tether").exists()
    if not_created is not None:
        assert not (tmp_path / not_created).exists()
    db = sqlite3.connect(tmp_path / created)
    try:
        assert db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchall() == [
            ("completed",)
        ]
    finally:
        db.close()


@pytest.mark.parametrize("url", ["postgres://db/tether", "runs.txt", "sqlite:///"])
def test_unsupported_store_url_exits_2(cli: Cli, url: str) -> None:
    done = cli("runs", "--store", url)
    assert done.returncode == USAGE_ERROR
    assert "unsupported store URL" in done.stderr
    assert "Traceback" not in done.stderr


# --- submit and worker -------------------------------------------------------------------


def test_submit_then_a_worker_completes_the_run(cli: Cli) -> None:
    run_id = cli.submit("hello", "queued task", "--user", "alice")
    (pending,) = cli.runs("--status", "pending")
    assert pending["run_id"] == run_id and pending["user"] == "alice"
    assert pending["events"] == 1 and pending["finished_at"] is None
    assert cli.kinds(run_id) == ["run_started"]

    done = cli("worker", "--until-idle", "--poll", "0.05")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "claimed 1 · finished 1 · released 0 · lost 0"

    (completed,) = cli.runs("--status", "completed")
    assert completed["run_id"] == run_id and completed["user"] == "alice"
    assert cli.runs("--status", "pending") == []
    last = cli.events(run_id)[-1]
    assert isinstance(last, RunFinished)
    assert last.output == "finished; the tool said: echo queued task"

    idle = cli("worker", "--until-idle", "--poll", "0.05")
    assert idle.returncode == 0
    assert idle.stdout.strip() == "claimed 0 · finished 0 · released 0 · lost 0"


def test_resume_runs_a_submitted_run_without_a_worker(cli: Cli) -> None:
    run_id = cli.submit("hello", "by hand")
    done = cli("resume", run_id, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["run_id"] == run_id and result["status"] == "completed"
    assert result["output"] == "finished; the tool said: echo by hand"
    assert cli.stored(run_id).status is RunStatus.COMPLETED


def test_sigterm_stops_a_worker_cleanly(cli: Cli) -> None:
    worker = cli.popen("worker", "--poll", "0.05")
    try:
        run_id = cli.submit("hello", "while the worker waits")
        wait_until(
            lambda: cli.stored(run_id).status is RunStatus.COMPLETED,
            "the worker to finish the run",
            process=worker,
        )
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    assert out.strip() == "claimed 1 · finished 1 · released 0 · lost 0"


def test_runs_table_shows_whole_run_ids_in_an_80_column_terminal(cli: Cli) -> None:
    run_id = cli.submit("hello", "a task")
    env = {**cli.env, "COLUMNS": "80"}
    done = cli("runs", "--status", "pending", env=env)
    assert done.returncode == 0, done.stderr
    assert "pending" in done.stdout
    assert run_id in done.stdout, f"the run id is cut in:\n{done.stdout}"


def test_submit_of_an_agent_that_does_not_load_stores_nothing(cli: Cli) -> None:
    done = cli("submit", f"{AGENTS}:no_such_agent", "task")
    assert done.returncode == USAGE_ERROR
    assert "has no attribute" in done.stderr
    assert cli.runs() == []


# --- resume after a crash ----------------------------------------------------------------


def test_resume_is_refused_while_the_owner_lives_and_repeats_a_read_after_it_died(
    cli: Cli,
) -> None:
    with blocked_runs(cli, "slow_read") as blocked:
        (run_id,), (ledger,) = blocked.run_ids, blocked.ledgers
        last = cli.journal(run_id)[-1]
        assert last["kind"] == "tool_call_started", "the intent is journaled before the call"
        assert last["tool"] == "read_slowly" and last["effect"] == "read"
        time.sleep(float(LEASE))  # longer than the lease: the worker must renew it
        refused = cli("resume", run_id)
        assert refused.returncode == USAGE_ERROR
        owner = f"{socket.gethostname()}-{blocked.worker.pid}"
        assert f"owned by {owner}" in refused.stderr and "Traceback" not in refused.stderr
        record = cli.stored(run_id)
        assert record.status is RunStatus.RUNNING and record.lease_owner == owner
        blocked.kill()

    assert ledger_lines(ledger) == ["read_slowly"]
    done = cli("resume", run_id, "--json")
    assert done.returncode == EXIT_CODES[RunStatus.COMPLETED] == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["run_id"] == run_id and result["status"] == "completed"
    assert result["output"] == "finished; the tool said: read_slowly ran"
    assert ledger_lines(ledger) == ["read_slowly", "read_slowly"], "a read is run again"

    kinds = cli.kinds(run_id)
    assert kinds.count("model_responded") == 2, "the recorded model call was not repeated"
    assert kinds.count("tool_call_started") == 1 and kinds.count("tool_call_finished") == 1
    assert kinds[-1] == "run_finished"
    record = cli.stored(run_id)
    assert record.status is RunStatus.COMPLETED and record.lease_owner is None


def test_resume_prints_the_timeline_of_what_it_runs(cli: Cli) -> None:
    blocked = interrupted(cli, "slow_read")
    (run_id,) = blocked.run_ids
    done = cli("resume", run_id)
    assert done.returncode == 0, done.stderr
    assert "✓ read_slowly read_slowly ran" in done.stdout
    assert "completed · 3 steps · 1 tool calls" in done.stdout
    assert f"run {run_id}" in done.stdout
    lines = done.stdout.splitlines()
    assert "finished; the tool said: read_slowly ran" in lines
    assert lines[-1] == f"next: tether show {run_id} · tether resume {run_id}"


def test_ctrl_c_releases_the_run_so_it_resumes_at_once(cli: Cli) -> None:
    ledger = cli.dir / "ledger.txt"
    # `tether run` holds the default 30 s lease: only a clean release allows a resume now.
    run = cli.popen("run", f"{AGENTS}:slow_read", str(ledger))
    try:
        wait_until(ledger.exists, "the tool to start", process=run)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=15)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=10)
    assert run.returncode != 0, out
    assert "Traceback" not in err, "an interruption is not a crash"
    (record,) = cli.runs()
    assert record["status"] == "pending" and record["lease_owner"] is None
    assert record["finished_at"] is None

    done = cli("resume", record["run_id"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert ledger_lines(ledger) == ["read_slowly", "read_slowly"]


def test_a_worker_recovers_runs_whose_worker_died(cli: Cli) -> None:
    blocked = interrupted(cli, "slow_read", count=2)
    done = cli("worker", "--until-idle", "--poll", "0.05", "--lease", LEASE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "claimed 2 · finished 2 · released 0 · lost 0"
    for run_id, ledger in zip(blocked.run_ids, blocked.ledgers, strict=True):
        assert cli.stored(run_id).status is RunStatus.COMPLETED
        assert ledger_lines(ledger) == ["read_slowly", "read_slowly"]


# --- in doubt and review -----------------------------------------------------------------


def test_an_interrupted_at_most_once_call_needs_review(cli: Cli) -> None:
    blocked = interrupted(cli, "slow_once")
    (run_id,), (ledger,) = blocked.run_ids, blocked.ledgers
    intent = cli.events(run_id)[-1]
    assert isinstance(intent, ToolCallStarted) and intent.effect == "at_most_once"

    done = cli("resume", run_id)
    assert done.returncode == EXIT_CODES[RunStatus.NEEDS_REVIEW] == 8, done.stderr
    assert "? send_once in doubt (needs review)" in done.stdout
    assert "needs_review" in done.stdout and f"tether review {run_id}" in done.stdout
    assert ledger_lines(ledger) == ["send_once"], "an at-most-once call is not repeated"

    (waiting,) = cli.runs("--status", "needs_review")
    assert waiting["run_id"] == run_id and waiting["finished_at"] is None
    assert cli.kinds(run_id)[-1] == "tool_call_in_doubt"
    shown = cli.ok("show", run_id).stdout
    assert "in doubt" in shown and "needs_review ·" in shown

    again, idle = cli.many(["resume", run_id], ["worker", "--until-idle", "--poll", "0.05"])
    assert again.returncode == USAGE_ERROR
    assert "review" in again.stderr and "Traceback" not in again.stderr
    assert idle.stdout.strip() == "claimed 0 · finished 0 · released 0 · lost 0"
    assert cli.stored(run_id).status is RunStatus.NEEDS_REVIEW
    assert ledger_lines(ledger) == ["send_once"]


def test_a_worker_can_end_runs_with_a_call_in_doubt(cli: Cli) -> None:
    blocked = interrupted(cli, "slow_once")
    (run_id,), (ledger,) = blocked.run_ids, blocked.ledgers
    done = cli("worker", "--until-idle", "--poll", "0.05", "--lease", LEASE, "--in-doubt", "end")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "claimed 1 · finished 1 · released 0 · lost 0"
    stored = cli.stored(run_id)
    assert stored.status is RunStatus.NEEDS_REVIEW and stored.finished_at is not None
    assert cli.kinds(run_id)[-3:] == ["tool_call_in_doubt", "tool_call_finished", "run_finished"]
    assert ledger_lines(ledger) == ["send_once"], "an at-most-once call is not repeated"
    refused = cli("review", run_id, "--retry")
    assert refused.returncode == USAGE_ERROR and "already ended" in refused.stderr


@pytest.mark.parametrize(
    ("decision", "executions", "told"),
    [
        (["--skip"], 1, "outcome_unknown"),
        (["--result", '{"ok": true}'], 1, '{"ok": true}'),
        (["--retry"], 2, "send_once ran"),
    ],
)
def test_review_decides_and_continues_the_run(
    cli: Cli, decision: list[str], executions: int, told: str
) -> None:
    run_id, ledger = in_review(cli)
    done = cli("review", run_id, *decision, "--reviewer", "ops", "--json")
    assert done.returncode == EXIT_CODES[RunStatus.COMPLETED], done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert told in result["output"], "the model was told what the reviewer decided"
    assert len(ledger_lines(ledger)) == executions

    journal = cli.journal(run_id)
    (decided,) = [e for e in journal if e["kind"] == "review_decided"]
    assert decided["decision"] == decision[0].removeprefix("--")
    assert decided["reviewer"] == "ops" and decided["step"] == 2
    assert decided["result"] == (decision[1] if decision[0] == "--result" else None)
    assert journal[-1]["kind"] == "run_finished" and journal[-1]["status"] == "completed"
    assert cli.stored(run_id).status is RunStatus.COMPLETED


def test_review_refuses_bad_decisions_and_no_resume_only_journals(cli: Cli) -> None:
    run_id, ledger = in_review(cli)
    bad = [
        ([], "choose exactly one of --retry, --skip or --result JSON"),
        (["--retry", "--skip"], "choose exactly one"),
        (["--skip", "--result", "{}"], "choose exactly one"),
        (["--result", "{not json"], "--result must be JSON"),
    ]
    refusals = cli.many(*(["review", run_id, *flags] for flags, _ in bad))
    for (flags, message), done in zip(bad, refusals, strict=True):
        assert done.returncode == USAGE_ERROR, (flags, done.stdout, done.stderr)
        assert message in done.stderr, (flags, done.stderr)
        assert "Traceback" not in done.stderr
    assert "review_decided" not in cli.kinds(run_id)
    assert cli.stored(run_id).status is RunStatus.NEEDS_REVIEW

    done = cli("review", run_id, "--skip", "--no-resume")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "decided steps [2]; the run is pending"
    decided = cli.events(run_id)[-1]
    assert isinstance(decided, ReviewDecided) and decided.decision == "skip"
    record = cli.stored(run_id)
    assert record.status is RunStatus.PENDING and record.finished_at is None
    assert ledger_lines(ledger) == ["send_once"]

    twice = cli("review", run_id, "--retry")
    assert twice.returncode == USAGE_ERROR and "no call in doubt" in twice.stderr

    resumed = cli("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "outcome_unknown" in json.loads(resumed.stdout)["output"]
    assert ledger_lines(ledger) == ["send_once"]


def test_review_of_a_run_without_calls_in_doubt_exits_2(cli: Cli) -> None:
    run_id = cli.run_json("hello")["run_id"]
    done = cli("review", run_id, "--skip")
    assert done.returncode == USAGE_ERROR
    assert f"run {run_id} has no call in doubt" in done.stderr
    assert "review_decided" not in cli.kinds(run_id)


# --- cancel ------------------------------------------------------------------------------


def test_cancel_a_pending_run(cli: Cli) -> None:
    run_id = cli.submit("hello", "never mind")
    done = cli("cancel", run_id, "--reason", "not needed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{run_id} cancelled"
    (record,) = cli.runs()
    assert record["status"] == "cancelled" and record["finished_at"] is not None
    last = cli.events(run_id)[-1]
    assert isinstance(last, RunFinished) and last.status is RunStatus.CANCELLED
    assert last.error_message == "not needed"

    again, idle = cli.many(["cancel", run_id], ["worker", "--until-idle", "--poll", "0.05"])
    assert again.returncode == USAGE_ERROR
    assert "already finished" in again.stderr
    assert idle.stdout.strip() == "claimed 0 · finished 0 · released 0 · lost 0"
    assert cli.kinds(run_id) == ["run_started", "run_finished"]


def test_cancel_a_running_run_fences_its_worker(cli: Cli) -> None:
    with blocked_runs(cli, "slow_read", until_idle=True) as blocked:
        (run_id,) = blocked.run_ids
        done = cli("cancel", run_id)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{run_id} cancelled"
        # The worker's next renewal is refused: it gives the run up and, idle, exits.
        out, err = blocked.worker.communicate(timeout=15)
        assert blocked.worker.returncode == 0, err
        assert out.strip() == "claimed 1 · finished 0 · released 0 · lost 1"
    events = cli.events(run_id)
    finished_calls = [e for e in events if e.kind == "tool_call_finished"]
    # Only the cancel's answer to the interrupted call: the worker's own write was refused.
    assert [e.error_class for e in finished_calls] == ["cancelled"]  # type: ignore[union-attr]
    assert isinstance(events[-1], RunFinished) and events[-1].status is RunStatus.CANCELLED
    assert cli.stored(run_id).status is RunStatus.CANCELLED


def test_resume_of_a_cancelled_run_reports_it_cancelled(cli: Cli) -> None:
    run_id = cli.submit("hello", "never mind")
    cli.ok("cancel", run_id)
    before = cli.stored(run_id)
    done = cli("resume", run_id, "--json")
    assert done.returncode == EXIT_CODES[RunStatus.CANCELLED], done.stderr
    assert json.loads(done.stdout)["status"] == "cancelled"
    assert cli.stored(run_id) == before


# --- finished runs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "status"),
    [
        ("hello", RunStatus.COMPLETED),
        ("broken", RunStatus.FAILED),
        ("looping", RunStatus.MAX_STEPS),
    ],
)
def test_resume_of_a_finished_run_replays_it_with_the_same_exit_code(
    cli: Cli, agent: str, status: RunStatus
) -> None:
    ran = cli("run", f"{AGENTS}:{agent}", "x", "--json")
    assert ran.returncode == EXIT_CODES[status], ran.stderr
    first = json.loads(ran.stdout)
    assert first["status"] == status.value
    before = cli.stored(first["run_id"])
    journal = cli.events(first["run_id"])

    done = cli("resume", first["run_id"], "--json")
    assert done.returncode == EXIT_CODES[status], done.stderr
    again = json.loads(done.stdout)
    for field in ("status", "output", "error", "steps", "tool_calls", "started_at"):
        assert again[field] == first[field], field
    assert cli.stored(first["run_id"]) == before, "a replay writes nothing"
    assert cli.events(first["run_id"]) == journal


def test_resume_of_a_finished_run_reports_when_it_finished(cli: Cli) -> None:
    first = cli.run_json("hello")
    again = json.loads(cli.ok("resume", first["run_id"], "--json").stdout)
    assert again == first


# --- prune -------------------------------------------------------------------------------


def test_prune_deletes_finished_runs_and_keeps_the_others(cli: Cli) -> None:
    finished = [cli.run_json("hello", f"t{i}")["run_id"] for i in range(2)]
    cancelled = cli.submit("hello", "to cancel")
    cli.ok("cancel", cancelled)
    pending = cli.submit("hello", "still waiting")

    kept = cli("runs", "prune", "--older-than", "1d")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "deleted 0 runs"

    done = cli("runs", "prune", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "deleted 3 runs"
    assert [r["run_id"] for r in cli.runs()] == [pending]
    assert cli.kinds(pending) == ["run_started"]
    for run_id in [*finished, cancelled]:
        assert cli.events(run_id) == [], "a pruned run's journal is deleted with it"
    gone = cli("show", finished[0])
    assert gone.returncode == USAGE_ERROR and f"no run {finished[0]}" in gone.stderr


def test_prune_refuses_bad_ages(cli: Cli) -> None:
    run_id = cli.run_json("hello")["run_id"]
    ages = ["3weeks", "10", "1.5h", "-1d", "d", "0 s"]
    for age, done in zip(
        ages, cli.many(*(["runs", "prune", "--older-than", age] for age in ages)), strict=True
    ):
        assert done.returncode == USAGE_ERROR, (age, done.stdout)
        assert "is not an age like 30d, 12h, 15m or 90s" in done.stderr, age
    assert cli.stored(run_id).status is RunStatus.COMPLETED


# --- unknown runs ------------------------------------------------------------------------


def test_unknown_run_ids_exit_2(cli: Cli) -> None:
    cli.run_json("hello")  # the store exists and holds another run
    commands = [
        ["show"],
        ["show", "--json"],
        ["resume"],
        ["resume", "--json"],
        ["cancel"],
        ["review", "--skip"],
    ]
    results = cli.many(*([name, "run_nope", *flags] for name, *flags in commands))
    for command, done in zip(commands, results, strict=True):
        assert done.returncode == USAGE_ERROR, (command, done.stdout, done.stderr)
        assert "no run run_nope" in done.stderr, command
        assert "Traceback" not in done.stderr
        assert done.stdout == "", command
