"""Approvals across processes: a run waits, its process exits, a person approves from the
command line, and a worker finishes the run (real processes, one SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tether.cli.common import EXIT_CODES, USAGE_ERROR
from tether.status import RunStatus

ROOT = Path(__file__).resolve().parents[2]

AGENT = '''
from pathlib import Path

from tether import Agent, tool
from tether.governance.approvals import ApprovalPolicy
from tether.messages import ToolResultMessage
from tether.testing import FunctionModel, call

LEDGER = Path(__file__).with_name("ledger.txt")


@tool(risk="external", effect="at_most_once")
def pay(amount: int, to: str) -> str:
    """Pay someone.

    Args:
        amount: Dollars.
        to: Whom.
    """
    with LEDGER.open("a") as ledger:
        ledger.write(f"{amount} {to}\\n")
    return "paid"


def respond(messages, tools):
    results = [m for m in messages if isinstance(m, ToolResultMessage)]
    if results:
        return "result: " + results[-1].content
    return [call("pay", {"amount": 250, "to": "acme"})]


agent = Agent(
    name="payer", model=FunctionModel(respond, name="m"), tools=[pay], approvals=ApprovalPolicy()
)
'''


def _cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("TETHER_STORE", "NO_COLOR")}
    env["TETHER_STORE"] = f"sqlite:///{tmp_path / 't.db'}"
    env["COLUMNS"] = "250"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_approve_from_the_command_line_and_a_worker_finishes(tmp_path: Path) -> None:
    (tmp_path / "payer.py").write_text(AGENT)
    tether = _cli(tmp_path)
    ledger = tmp_path / "ledger.txt"

    started = tether("run", "payer.py:agent", "pay acme", "--user", "ana")
    assert started.returncode == EXIT_CODES[RunStatus.WAITING_APPROVAL], started.stderr
    assert "waits for a person" in started.stdout and not ledger.exists()

    listed = tether("approvals", "--json")
    [request] = json.loads(listed.stdout)
    assert request["tool"] == "pay" and json.loads(request["arguments"]) == {
        "amount": 250,
        "to": "acme",
    }
    assert request["status"] == "pending"
    refused = tether("resume", request["run_id"])
    assert refused.returncode == USAGE_ERROR and request["approval_id"] in refused.stderr
    idle = tether("worker", "--until-idle")  # nothing to claim while the run waits
    assert idle.returncode == 0 and not ledger.exists()

    approved = tether("approve", request["approval_id"], "--as", "bob", "--comment", "invoice ok")
    assert approved.returncode == 0, approved.stderr
    assert "the run is pending" in approved.stdout
    again = tether("approve", request["approval_id"], "--as", "bob")
    assert again.returncode == USAGE_ERROR and "already approved" in again.stderr
    assert json.loads(tether("approvals", "--json").stdout) == []

    worked = tether("worker", "--until-idle")
    assert worked.returncode == 0, worked.stderr
    assert ledger.read_text() == "250 acme\n", "paid once, after approval"
    [run] = json.loads(tether("runs", "--json").stdout)
    assert run["status"] == "completed"
    shown = tether("show", run["run_id"])
    assert "waits for approval" in shown.stdout and "approved by bob" in shown.stdout

    verified = tether("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_deny_from_the_command_line_needs_a_reason_and_resumes(tmp_path: Path) -> None:
    (tmp_path / "payer.py").write_text(AGENT)
    tether = _cli(tmp_path)
    tether("run", "payer.py:agent", "pay acme", "--user", "ana")
    [request] = json.loads(tether("approvals", "--json").stdout)

    missing = tether("deny", request["approval_id"])
    assert missing.returncode == USAGE_ERROR
    unknown = tether("approve", "no-such-request", "--as", "bob")
    assert unknown.returncode == USAGE_ERROR and "no-such-request" in unknown.stderr

    denied = tether("deny", request["approval_id"], "--reason", "wrong payee", "--resume")
    assert denied.returncode == 0, denied.stderr
    assert "the run is completed" in denied.stdout
    assert not (tmp_path / "ledger.txt").exists()
    [run] = json.loads(tether("runs", "--json").stdout)
    assert run["status"] == "completed"
