"""`tether undo` as a real process, on an agent loaded from its reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

AGENT = """
from pathlib import Path
from tether import Agent, Compensation, tool
from tether.testing import ScriptedModel, call

LEDGER = Path(__file__).with_name("ledger.txt")

def refund(c: Compensation) -> None:
    with LEDGER.open("a") as f:
        f.write(f"refund {c.arguments['amount']}\\n")

@tool(risk="external", effect="idempotent", compensate=refund)
def charge(amount: int) -> str:
    '''Charge.

    Args:
        amount: Dollars.
    '''
    with LEDGER.open("a") as f:
        f.write(f"charge {amount}\\n")
    return "ok"

@tool(risk="irreversible")
def tweet(text: str) -> str:
    '''Post.

    Args:
        text: Words.
    '''
    return "posted"

agent = Agent(
    name="shop",
    model=ScriptedModel([call("charge", {"amount": 3}), call("tweet", {"text": "hi"}), "done"]),
    tools=[charge, tweet],
)
"""


def tether(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env["TETHER_STORE"] = f"sqlite:///{tmp_path / 'runs.db'}"
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_undo_compensates_reports_and_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(textwrap.dedent(AGENT))
    ran = tether(tmp_path, "run", "shop.py:agent", "buy", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    done = tether(tmp_path, "undo", run_id)
    assert done.returncode == 0, done.stderr
    assert "charge  undone" in done.stdout
    assert "tweet  irreversible (the tool is irreversible)" in done.stdout
    assert (tmp_path / "ledger.txt").read_text().splitlines() == ["charge 3", "refund 3"]

    again = tether(tmp_path, "undo", run_id, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["complete"] is True and report["run_id"] == run_id
    assert report["steps"][1] == {
        "step": 2,
        "tool": "charge",
        "outcome": "undone",
        "message": "in an earlier undo",
    }
    assert (tmp_path / "ledger.txt").read_text().splitlines() == ["charge 3", "refund 3"]


def test_undo_of_an_unknown_run_is_a_usage_error(tmp_path: Path) -> None:
    done = tether(tmp_path, "undo", "run_nope")
    assert done.returncode == 2 and "no run run_nope" in done.stderr
