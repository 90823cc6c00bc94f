"""One JSON log line per run event, with the run's ids and no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether import Agent, RunStatus
from tether.errors import ModelError
from tether.ids import trace_id
from tether.observe.logs import EventLog, JsonFormatter, configure_logging
from tether.runtime import Tether
from tether.store import InMemoryStore, SqliteStore
from tether.testing import ScriptedModel, call
from tether.tools import tool

pytestmark = pytest.mark.anyio

SECRET = "sk-ant-api03-SECRETSECRETSECRET"
ROOT = Path(__file__).resolve().parents[2]


@tool(risk="read")
def read_config(name: str) -> str:
    """Read a configuration entry.

    Args:
        name: The entry.
    """
    return f"{name}: {SECRET} and Authorization: Bearer abc.def.ghi"


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.events.{id(stream)}")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def _agent() -> Agent[str]:
    model = ScriptedModel(
        [call("read_config", {"name": "db"}), call("missing_tool"), f"the key is {SECRET}"],
        name="m",
    )
    return Agent(name="ops", model=model, tools=[read_config])


async def test_one_json_line_per_event_with_the_run_ids() -> None:
    logger, stream = _capture()
    store = InMemoryStore()
    result = await Tether(store=store, subscribers=[EventLog(logger)]).run(
        _agent(), "read the db config", user="ana"
    )
    assert result.status is RunStatus.COMPLETED
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = await store.events(result.run_id)
    assert [line["event"] for line in lines] == [e.kind for e in events]
    for line in lines:
        assert line["run_id"] == result.run_id
        assert line["agent"] == "ops" and line["user"] == "ana"
        assert line["trace_id"] == trace_id(result.run_id)
        assert {"ts", "level", "logger", "message", "step"} <= line.keys()
    finished = [line for line in lines if line["event"] == "tool_call_finished"]
    assert [line["level"] for line in finished] == ["INFO", "WARNING"]
    assert finished[1]["error_class"] == "unknown_tool"
    assert lines[-1]["status"] == "completed"
    responded = next(line for line in lines if line["event"] == "model_responded")
    assert responded["model"] == "m" and responded["input_tokens"] == 0


async def test_no_secret_reaches_a_log_line() -> None:
    logger, stream = _capture()
    leaky = ScriptedModel(
        [call("read_config", {"name": "db"}), ModelError(f"401: key {SECRET} was revoked")],
        name="m",
    )
    agent = Agent(name="ops", model=leaky, tools=[read_config])
    result = await Tether(store=InMemoryStore(), subscribers=[EventLog(logger)]).run(agent, "go")
    assert result.status is RunStatus.FAILED
    text = stream.getvalue()
    assert SECRET not in text and "abc.def.ghi" not in text
    assert "[REDACTED]" in text  # the lines were written, with the secrets taken out


async def test_a_disabled_logger_costs_no_record_and_forgets_finished_runs() -> None:
    logger, stream = _capture()
    logger.setLevel(logging.CRITICAL)
    log = EventLog(logger)
    await Tether(store=InMemoryStore(), subscribers=[log]).run(_agent(), "go")
    assert stream.getvalue() == ""
    assert log._runs == {}


def test_the_formatter_redacts_messages_and_extras_and_survives_odd_values() -> None:
    record = logging.LogRecord("tether", logging.ERROR, "f", 1, f"key {SECRET}", (), None)
    record.headers = {"Authorization": "Bearer zzz.yyy"}
    record.thing = object()
    line = json.loads(JsonFormatter().format(record))
    assert SECRET not in line["message"] and "zzz.yyy" not in json.dumps(line)
    assert line["thing"].startswith("<object")


def test_configure_logging_is_idempotent() -> None:
    first = io.StringIO()
    second = io.StringIO()
    configure_logging(stream=first)
    handler = configure_logging(stream=second, level="WARNING")
    root = logging.getLogger("tether")
    try:
        assert [h for h in root.handlers if getattr(h, "_tether_configured", False)] == [handler]
        logging.getLogger("tether.x").warning("hello %s", SECRET)
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["message"] == "hello [REDACTED]"
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.NOTSET)


def test_show_and_its_json_export_do_not_print_secrets(tmp_path: Path) -> None:
    database = tmp_path / "t.db"

    async def seed() -> str:
        store = SqliteStore(database)
        result = await Tether(store=store).run(_agent(), f"go, with {SECRET}")
        await store.close()
        return result.run_id

    run_id = asyncio.run(seed())
    environment = {k: v for k, v in os.environ.items() if k != "TETHER_STORE"}
    for args in (["show", run_id], ["show", run_id, "--json"]):
        shown = subprocess.run(
            [sys.executable, "-m", "tether", *args, "--store", str(database)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert "read_config" in shown.stdout
        assert SECRET not in shown.stdout and "abc.def.ghi" not in shown.stdout, args
