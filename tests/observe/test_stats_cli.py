"""`tether stats` and `tether feedback` on a SQLite store."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from tether import Agent
from tether.cli.main import app
from tether.messages import ModelResponse, Usage
from tether.runtime import Tether
from tether.store import SqliteStore
from tether.testing import ScriptedModel, call
from tether.tools import tool


@tool(risk="read")
def lookup(name: str) -> str:
    """Look up a name.

    Args:
        name: The name.
    """
    return "ok"


def _seed(path: Path) -> list[str]:
    async def seed() -> list[str]:
        store = SqliteStore(path)
        runtime = Tether(store=store)
        usage = Usage(input_tokens=10, output_tokens=5)
        ids = []
        for steps in (1, 2, 3):
            script = [
                ModelResponse(
                    tool_calls=(call("lookup", {"name": str(i)}),),
                    usage=usage,
                    cost_usd=Decimal("0.1"),
                )
                for i in range(steps)
            ]
            script.append(ModelResponse(text="done", usage=usage, cost_usd=Decimal("0.1")))
            agent = Agent(name="helper", model=ScriptedModel(script, name="m"), tools=[lookup])
            ids.append((await runtime.run(agent, "go")).run_id)
        broken = Agent(name="helper", model=ScriptedModel([], name="m"))
        ids.append((await runtime.run(broken, "go")).run_id)
        await store.close()
        return ids

    return asyncio.run(seed())


def test_stats_reports_each_agent(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ids = _seed(path)
    runner = CliRunner()
    for run_id, score in ((ids[0], 5), (ids[1], 3)):
        given = runner.invoke(
            app, ["feedback", run_id, "--score", str(score), "--as", "ana", "--store", str(path)]
        )
        assert given.exit_code == 0, given.output
    shown = runner.invoke(app, ["stats", "--json", "--store", str(path)])
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)["agents"]["helper"]
    assert figures["runs"] == 4
    assert figures["completion_rate"] == 0.75 and figures["error_rate"] == 0.25
    assert figures["errors_by_class"] == {"script_exhausted": 1}
    # steps: 3, 5, 7 and 1 (the failed run's one model request)
    assert figures["steps_per_run"] == {"median": 4.0, "p95": 7}
    assert figures["cost_per_task_usd"] == "0.225"  # (0.2 + 0.3 + 0.4 + 0) / 4
    assert figures["satisfaction"] == {"mean": 4.0, "ratings": 2}
    assert figures["drift_alerts"] == []

    text = runner.invoke(app, ["stats", "--agent", "helper", "--store", str(path)])
    assert text.exit_code == 0 and "helper: 4 runs · completed 75%" in text.stdout
    none = runner.invoke(app, ["stats", "--agent", "nobody", "--store", str(path)])
    assert none.exit_code == 0 and "no finished runs" in none.stdout


def test_bad_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ids = _seed(path)
    runner = CliRunner()
    for args in (
        ["feedback", ids[0], "--score", "9"],
        ["feedback", "run_missing", "--score", "3"],
        ["stats", "--since", "forever"],
    ):
        result = runner.invoke(app, [*args, "--store", str(path)])
        assert result.exit_code == 2, (args, result.output)
