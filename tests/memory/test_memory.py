"""Long-term memory: readable files, search with hand edits, consolidation, size limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import Agent, InMemoryStore, RunStatus, Tether
from tether.errors import ConfigurationError
from tether.memory import Memory, memory_tools
from tether.memory.files import parse_facts
from tether.testing import FakeClock, ScriptedModel, call

DAY1 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _memory(tmp_path: Path, **kwargs: int) -> tuple[Memory, FakeClock]:
    clock = FakeClock(start=DAY1)
    return Memory(tmp_path / "home", clock=clock, **kwargs), clock


def test_remember_writes_a_daily_log_a_person_can_read(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    memory.remember("The customer prefers email.", run_id="run-a")
    memory.remember("Chose the Tuesday slot.", kind="decision", run_id="run-a")
    log = (tmp_path / "home" / "memory" / "2026-12-01.md").read_text()
    assert log == (
        "# 2026-12-01\n\n"
        "## 09:30:00Z · fact · run run-a\nThe customer prefers email.\n\n"
        "## 09:30:00Z · decision · run run-a\nChose the Tuesday slot.\n"
    )
    assert "The customer prefers email." in memory.recall()


def test_the_same_text_from_the_same_run_is_recorded_once(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    for _ in range(3):
        memory.remember("Invoice 42 is paid.", run_id="run-a")
    memory.remember("Invoice 42 is paid.", run_id="run-b")
    log = (tmp_path / "home" / "memory" / "2026-12-01.md").read_text()
    assert log.count("Invoice 42 is paid.") == 2


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("   ", "fact", "the text is empty"),
        ("x" * 4001, "fact", "at most 4000 characters, not 4001"),
        ("ok", "secret", "kind must be one of fact, decision, note"),
    ],
)
def test_bad_entries_are_refused_with_the_reason_and_nothing_is_written(
    tmp_path: Path, text: str, kind: str, message: str
) -> None:
    memory, _ = _memory(tmp_path)
    with pytest.raises(ValueError, match=message):
        memory.remember(text, kind=kind)
    assert not (tmp_path / "home" / "memory").exists()


def test_search_finds_entries_and_hand_edits(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    memory.remember("The staging database is called ferret.", run_id="r1")
    assert [h.path for h in memory.search("ferret")] == ["memory/2026-12-01.md"]

    home = tmp_path / "home"
    log = home / "memory" / "2026-12-01.md"
    log.write_text(log.read_text() + "\n## added by hand\nThe backup window is 02:00 UTC.\n")
    (home / "MEMORY.md").write_text("# Memory\n\n- Ops on-call is Dana.\n")
    (home / "memory" / "2026-11-30.md").write_text("A page without headings about walrus.\n")
    assert memory.search("backup window")[0].text == "The backup window is 02:00 UTC."
    assert memory.search("on-call")[0].path == "MEMORY.md"
    assert memory.search("walrus")[0].path == "memory/2026-11-30.md"
    (home / "memory" / "2026-11-30.md").unlink()
    assert memory.search("walrus") == []
    # Deleting the index is safe: it is rebuilt from the files.
    (home / "index.db").unlink()
    assert memory.search("ferret")[0].text == "The staging database is called ferret."


@pytest.mark.parametrize("query", ['"ferret', "ferret OR", "NEAR(ferret", "ferret*", "-ferret", ""])
def test_search_treats_query_syntax_as_words(tmp_path: Path, query: str) -> None:
    memory, _ = _memory(tmp_path)
    memory.remember("The staging database is called ferret.")
    hits = memory.search(query)
    assert [h.text for h in hits] == (["The staging database is called ferret."] if query else [])


def test_consolidation_merges_duplicates_keeps_provenance_and_archives(tmp_path: Path) -> None:
    memory, clock = _memory(tmp_path)
    home = tmp_path / "home"
    memory.remember("The customer prefers email.", run_id="run-a")
    memory.remember("Looked at 3 invoices.", kind="note", run_id="run-a")
    clock.advance(timedelta(days=1))
    memory.remember("the customer prefers EMAIL", run_id="run-b")
    memory.remember("Use the EU region.", kind="decision", run_id="run-b")
    clock.advance(timedelta(days=1))
    memory.remember("Today's entry waits.", run_id="run-c")
    (home / "MEMORY.md").write_text("# Memory\n\n- Ops on-call is Dana.\n")

    report = memory.consolidate()

    assert report.logs == ("2026-12-01.md", "2026-12-02.md")
    assert (report.entries, report.added, report.merged, report.overflowed) == (4, 2, 1, 0)
    facts = parse_facts((home / "MEMORY.md").read_text())
    assert facts == [
        "Ops on-call is Dana.",
        "The customer prefers email. _(runs: run-a, run-b; 2026-12-01 to 2026-12-02)_",
        "Use the EU region. _(runs: run-b; 2026-12-02)_",
    ]
    assert sorted(p.name for p in (home / "memory").iterdir()) == ["2026-12-03.md", "archive"]
    assert memory.search("invoices")[0].path == "memory/archive/2026-12-01.md"
    assert memory.consolidate().logs == ()
    assert parse_facts((home / "MEMORY.md").read_text()) == facts

    clock.advance(timedelta(days=1))
    memory.remember("The customer prefers email!", run_id="run-d")
    memory.consolidate(include_today=True)
    assert "runs: run-a, run-b, run-c, run-d" not in (home / "MEMORY.md").read_text()
    assert (
        "_(runs: run-a, run-b, run-d; 2026-12-01 to 2026-12-04)_"
        in (home / "MEMORY.md").read_text()
    )


def test_nothing_is_lost_at_the_size_limits(tmp_path: Path) -> None:
    memory, clock = _memory(tmp_path, max_log_bytes=1500, max_memory_chars=1200)
    texts = [f"Fact number {i} about the account {i * 7}." for i in range(120)]
    for i, text in enumerate(texts):
        if i % 30 == 0:
            clock.advance(timedelta(days=1))
        memory.remember(text, run_id=f"run-{i}")  # never refused
    memory.consolidate(include_today=True)

    home = tmp_path / "home"
    kept = parse_facts((home / "MEMORY.md").read_text())
    moved = parse_facts((home / "memory" / "archive" / "facts-overflow.md").read_text())
    assert len((home / "MEMORY.md").read_text()) <= 1200
    found = sorted(f.split(" _(")[0] for f in kept + moved)
    assert found == sorted(texts), "every fact is in MEMORY.md or the overflow, once"
    assert kept and "Fact number 119 " in kept[-1], "the newest facts stay in MEMORY.md"
    for text in (texts[0], texts[60], texts[119]):
        assert memory.search(text)[0].text.startswith(text)


def test_state_json_is_updated_atomically_and_bad_values_are_refused(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    assert memory.state() == {}
    assert memory.update_state({"cursor": 3, "owner": "ops"}) == {"cursor": 3, "owner": "ops"}
    assert memory.update_state({"owner": None}) == {"cursor": 3}
    assert json.loads((tmp_path / "home" / "state.json").read_text()) == {"cursor": 3}
    with pytest.raises(ValueError, match="state must be JSON"):
        memory.update_state({"when": datetime.now()})
    (tmp_path / "home" / "state.json").write_text("[1, 2")
    with pytest.raises(ConfigurationError, match="is not valid JSON"):
        memory.update_state({"cursor": 4})
    assert (tmp_path / "home" / "state.json").read_text() == "[1, 2"
    assert not list((tmp_path / "home").glob(".state.json.*")), "no temporary file left"


def test_bad_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least 1000"):
        Memory(tmp_path, max_log_bytes=10)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="is not a directory"):
        Memory(tmp_path / "file")


@pytest.mark.anyio
async def test_an_agent_remembers_searches_and_recalls_in_a_run(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    model = ScriptedModel(
        [
            call("remember", {"text": "Deploys happen on Thursdays.", "kind": "decision"}),
            call("search_memory", {"query": "deploys thursdays"}),
            call("recall", {}),
            call("remember", {"text": "x" * 5000}),
            "done",
        ]
    )
    agent = Agent(name="ops", model=model, tools=memory_tools(memory))
    result = await Tether(store=InMemoryStore()).run(agent, "note the deploy day")
    assert result.status is RunStatus.COMPLETED
    results = [m.content for m in result.messages if m.role == "tool"]
    assert results[0] == "remembered in 2026-12-01.md"
    assert "Deploys happen on Thursdays." in results[1]
    assert f"run {result.run_id}" in results[1]
    assert "Deploys happen on Thursdays." in results[2]
    assert "at most 4000 characters" in results[3]
    log = (tmp_path / "home" / "memory" / "2026-12-01.md").read_text()
    assert f"· decision · run {result.run_id}" in log
    assert "xxxxx" not in log


def test_a_fact_seen_again_comes_back_from_the_overflow_once(tmp_path: Path) -> None:
    memory, clock = _memory(tmp_path, max_memory_chars=1000)
    home = tmp_path / "home"
    memory.remember("The oldest fact, about the blue server.", run_id="run-old")
    for i in range(30):
        clock.advance(timedelta(hours=1))
        memory.remember(f"Newer fact {i} about the rack layout.", run_id=f"run-{i}")
    clock.advance(timedelta(days=1))
    memory.consolidate()
    overflow = home / "memory" / "archive" / "facts-overflow.md"
    assert "blue server" in overflow.read_text()
    assert "blue server" not in (home / "MEMORY.md").read_text()

    memory.remember("The oldest fact, about the BLUE server!", run_id="run-new")
    clock.advance(timedelta(days=1))
    memory.consolidate()
    facts = parse_facts((home / "MEMORY.md").read_text())
    back = [f for f in facts if "blue server" in f]
    assert back == [
        "The oldest fact, about the blue server. "
        "_(runs: run-old, run-new; 2026-12-01 to 2026-12-03)_"
    ]
    assert "blue server" not in overflow.read_text()


def test_a_duplicate_left_alone_in_the_overflow_is_removed_from_it(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    home = tmp_path / "home"
    (home / "memory" / "archive").mkdir(parents=True)
    (home / "MEMORY.md").write_text("- Port 8443 is open. _(runs: r1; 2026-11-20)_\n")
    overflow = home / "memory" / "archive" / "facts-overflow.md"
    overflow.write_text("- Port 8443 is open. _(runs: r0; 2026-11-02)_\n")
    memory.remember("Something new.", run_id="r2")
    memory.consolidate(include_today=True)
    assert parse_facts(overflow.read_text()) == []
    assert memory.search("8443")[0].path == "MEMORY.md"
    assert len(memory.search("8443")) == 1


def test_a_fact_left_in_both_files_by_a_crash_is_merged_into_one(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    home = tmp_path / "home"
    (home / "memory" / "archive").mkdir(parents=True)
    (home / "MEMORY.md").write_text("- Port 8443 is open. _(runs: r1; 2026-11-20)_\n")
    (home / "memory" / "archive" / "facts-overflow.md").write_text(
        "- Port 8443 is open. _(runs: r0; 2026-11-02 to 2026-11-03)_\n- Kept aside.\n"
    )
    memory.remember("Something new.", run_id="r2")
    memory.consolidate(include_today=True)
    assert parse_facts((home / "MEMORY.md").read_text()) == [
        "Port 8443 is open. _(runs: r1, r0; 2026-11-02 to 2026-11-20)_",
        "Something new. _(runs: r2; 2026-12-01)_",
    ]
    assert parse_facts((home / "memory" / "archive" / "facts-overflow.md").read_text()) == [
        "Kept aside."
    ]


def test_secrets_never_reach_the_memory_files(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    key = "sk-proj-abcdefghijklmnopqrstuvwx"
    memory.remember(f"The deploy key is {key}; password: hunter22", run_id="r1")
    memory.update_state({"token": f"Bearer {key}", "nested": {"api_key": key}})
    memory.consolidate(include_today=True)
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json"):
            assert key not in path.read_text() and "hunter22" not in path.read_text(), path
    assert "The deploy key is [REDACTED]" in (tmp_path / "home" / "MEMORY.md").read_text()


def test_heading_lines_in_a_text_stay_inside_their_entry(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    entry = memory.remember("# Title\n## Sub\nbody", kind="note", run_id="r1")
    assert (entry.heading, entry.run_id) == ("09:30:00Z · note · run r1", "r1")
    assert entry.text == "### Title\n#### Sub\nbody"
    memory.remember("# Title\n## Sub\nbody", kind="note", run_id="r1")  # a retry
    log = (tmp_path / "home" / "memory" / "2026-12-01.md").read_text()
    assert log.count("body") == 1
    memory.consolidate(include_today=True)
    assert (
        not (tmp_path / "home" / "MEMORY.md").exists()
        or "Title" not in (tmp_path / "home" / "MEMORY.md").read_text()
    ), "a note is not promoted"


def test_what_a_person_wrote_in_memory_md_survives_consolidation(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    hand = (
        "# Memory\n\n## Preferences\nVIP customer; escalate early.\n* likes tea\n"
        "1. call before noon\n\n- Uses the EU region.\n\n## People\nDana is on call.\n"
    )
    (home / "MEMORY.md").write_text(hand)
    memory.remember("uses the EU region", run_id="r1")
    memory.remember("Backups at 02:00.", run_id="r1")
    memory.consolidate(include_today=True)
    text = (home / "MEMORY.md").read_text()
    assert (
        text
        == hand.replace(
            "- Uses the EU region.\n", "- Uses the EU region. _(runs: r1; 2026-12-01)_\n"
        )
        + "- Backups at 02:00. _(runs: r1; 2026-12-01)_\n"
    )
    hits = memory.search("escalate")
    assert [(h.path, h.heading, h.text) for h in hits] == [
        (
            "MEMORY.md",
            "Preferences",
            "VIP customer; escalate early. * likes tea 1. call before noon",
        )
    ]


def test_a_bad_hand_written_date_never_stops_consolidation(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path, max_log_bytes=1000)
    home = tmp_path / "home"
    home.mkdir()
    (home / "MEMORY.md").write_text("- Leap day fact _(by hand; 2024-02-30)_\n")
    for i in range(40):  # past max_log_bytes: remember consolidates on its own
        memory.remember(f"Fact {i} that fills the log.", run_id="r1")
    facts = parse_facts((home / "MEMORY.md").read_text())
    assert facts[0] == "Leap day fact _(by hand; 2024-02-30)_"
    assert len(facts) > 1


def test_numbers_in_a_query_match_text_not_clock_times(tmp_path: Path) -> None:
    memory, clock = _memory(tmp_path)
    clock.advance(timedelta(minutes=47, seconds=5))  # 10:17:05Z
    memory.remember("order 3 shipped", run_id="r1")
    memory.remember("order 17 shipped", run_id="r1")
    assert [h.text for h in memory.search("order 17")] == ["order 17 shipped"]
    assert memory.search("10 05") == [], "clock times are not indexed"


def test_a_retry_after_the_log_was_consolidated_adds_nothing(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    memory.remember("retry me", kind="note", run_id="r1")
    memory.consolidate(include_today=True)
    memory.remember("retry me", kind="note", run_id="r1")
    home = tmp_path / "home"
    assert not (home / "memory" / "2026-12-01.md").exists()
    assert (home / "memory" / "archive" / "2026-12-01.md").read_text().count("retry me") == 1


def test_files_get_the_mode_of_a_plain_write(tmp_path: Path) -> None:
    import os
    import stat

    memory, _ = _memory(tmp_path)
    memory.remember("mode check", run_id="r1")
    memory.update_state({"a": 1})
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("state.json", "memory/2026-12-01.md"):
        mode = stat.S_IMODE((tmp_path / "home" / name).stat().st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))


def test_recall_stays_within_its_size_and_says_what_it_cut(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    for i in range(50):
        memory.remember(f"A long enough entry number {i} for the recall test.", run_id="r1")
    for size in (200, 1000, 3000):
        text = memory.recall(max_chars=size)
        assert len(text) <= size
        assert text.startswith("[tether: ") and "older characters not shown" in text
        assert text.endswith("for the recall test.")
    with pytest.raises(ValueError, match="at least 200"):
        memory.recall(max_chars=50)
    with pytest.raises(ConfigurationError, match="recall_chars >= 200"):
        memory_tools(memory, recall_chars=10)


def test_hand_written_entries_are_promoted_whatever_their_heading(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    logs = tmp_path / "home" / "memory"
    logs.mkdir(parents=True)
    (logs / "2026-11-30.md").write_text(
        "## Call with Bob · Tuesday\n### Outcome\nBob signs on Friday.\n\n"
        "## 10:00:00Z · note · run r9\nJust a note.\n"
    )
    report = memory.consolidate()
    assert (report.entries, report.added) == (2, 1)
    assert parse_facts((tmp_path / "home" / "MEMORY.md").read_text()) == [
        "Outcome Bob signs on Friday. _(by hand; 2026-11-30)_"
    ]


def test_consolidating_a_missing_home_creates_nothing(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "typo")
    assert memory.consolidate().logs == ()
    assert not (tmp_path / "typo").exists()
