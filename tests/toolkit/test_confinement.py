"""Every path escape is refused, by every file tool, with a reason the model can read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.toolkit.conftest import Workspace, call_tool
from tether import ToolError
from tether.toolkit import TRASH_DIRNAME


def build(base: Path) -> Workspace:
    ws = Workspace(base)
    root, outside = ws.root, ws.outside
    ws.file("sub/file.txt", "inside")
    (root / "link_out").symlink_to(outside)
    (root / "link_out_rel").symlink_to("../outside")
    (root / "secret_link").symlink_to(outside / "secret.txt")
    (root / "loop_a").symlink_to("loop_b")
    (root / "loop_b").symlink_to("loop_a")
    (root / "sub" / "up").symlink_to("..")  # back to the root: inside, allowed
    (root / "sub" / "upup").symlink_to("../..")  # the root's parent: outside
    (root / "sub" / "deep_out").symlink_to("../link_out")  # a link to a link that leaves
    (root / "dangling_out").symlink_to(outside / "not-yet.txt")
    (root / "dangling_in").symlink_to("sub/new.txt")
    ws.trash.delete_record("r", "1", 1)  # so the trash folder exists
    (root / "link_trash").symlink_to(TRASH_DIRNAME)
    return ws


@pytest.fixture
def escape_ws(tmp_path: Path) -> Workspace:
    return build(tmp_path)


BAD_PATHS = [
    pytest.param("/etc/passwd", "absolute", id="absolute"),
    pytest.param("//etc/passwd", "absolute", id="double-slash-absolute"),
    pytest.param("\\etc\\passwd", "absolute", id="backslash-absolute"),
    pytest.param("OUTSIDE_ABSOLUTE", "absolute", id="absolute-into-outside"),
    pytest.param("..", "'..'", id="parent"),
    pytest.param("../outside/secret.txt", "'..'", id="traversal"),
    pytest.param("sub/../../outside/secret.txt", "'..'", id="nested-traversal"),
    pytest.param("sub/..", "'..'", id="dotdot-even-inside"),
    pytest.param("sub/./../..", "'..'", id="dot-and-dotdot"),
    pytest.param("link_out", "outside", id="symlink-dir-out"),
    pytest.param("link_out/secret.txt", "outside", id="through-symlink-out"),
    pytest.param("link_out_rel/secret.txt", "outside", id="relative-symlink-out"),
    pytest.param("secret_link", "outside", id="symlink-file-out"),
    pytest.param("sub/upup/outside/secret.txt", "outside", id="symlink-to-grandparent"),
    pytest.param("sub/deep_out/secret.txt", "outside", id="symlink-chain-out"),
    pytest.param("dangling_out", "outside", id="dangling-symlink-out"),
    pytest.param("loop_a", "loop", id="symlink-loop"),
    pytest.param("loop_a/file", "loop", id="through-symlink-loop"),
    pytest.param("sub/file.txt\x00.png", "NUL", id="nul-byte"),
    pytest.param("\x00", "NUL", id="only-nul"),
    pytest.param("", "empty", id="empty"),
    pytest.param("   ", "empty", id="blank"),
    pytest.param(TRASH_DIRNAME, "trash", id="trash-folder"),
    pytest.param(f"{TRASH_DIRNAME}/x/payload", "trash", id="inside-trash"),
    pytest.param("sub/.Tether-Trash/x", "trash", id="trash-name-any-case"),
    pytest.param("link_trash", "trash", id="symlink-to-trash"),
    pytest.param("link_trash/anything", "trash", id="through-symlink-to-trash"),
]


def attempts(ws: Workspace, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "read_file", {"path": path}
    yield "list_files", {"path": path}
    yield "write_file", {"path": path, "content": "pwned"}
    yield "delete_file", {"path": path}
    yield "move_file", {"source": path, "destination": "sub/moved"}
    yield "move_file", {"source": "sub/file.txt", "destination": path}


@pytest.mark.parametrize(("path", "reason"), BAD_PATHS)
def test_every_tool_refuses_the_path(escape_ws: Workspace, path: str, reason: str) -> None:
    if path == "OUTSIDE_ABSOLUTE":
        path = str(escape_ws.outside / "secret.txt")
    before = escape_ws.outside_state()
    trash_before = sorted(p.name for p in escape_ws.trash.path.iterdir())
    for name, arguments in attempts(escape_ws, path):
        with pytest.raises(ToolError) as caught:
            call_tool(escape_ws[name], **arguments)
        assert reason in caught.value.message, (name, caught.value.message)
        assert str(escape_ws.outside) not in caught.value.message or "absolute" in reason
    assert escape_ws.outside_state() == before
    assert (escape_ws.root / "sub/file.txt").read_text() == "inside"
    assert sorted(p.name for p in escape_ws.trash.path.iterdir()) == trash_before


def test_links_that_stay_inside_are_allowed(escape_ws: Workspace) -> None:
    assert call_tool(escape_ws["read_file"], path="sub/up/sub/file.txt") == "inside"
    call_tool(escape_ws["write_file"], path="dangling_in", content="created via link")
    assert (escape_ws.root / "sub/new.txt").read_text() == "created via link"


def test_the_trash_is_not_listed(escape_ws: Workspace) -> None:
    assert TRASH_DIRNAME not in call_tool(escape_ws["list_files"])


# -- property: no path at all gets out -----------------------------------------------

SEGMENTS = st.sampled_from(
    [
        "sub",
        "file.txt",
        "..",
        ".",
        "",
        "link_out",
        "link_out_rel",
        "secret_link",
        "loop_a",
        "up",
        "upup",
        "deep_out",
        "dangling_out",
        "dangling_in",
        "link_trash",
        TRASH_DIRNAME,
        "outside",
        "secret.txt",
        "~",
        "\x00",
        "x",
    ]
)
PATHS = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "", "/", "./", "\\"]),
        st.lists(st.one_of(SEGMENTS, st.text(max_size=4)), min_size=1, max_size=6),
    ),
    st.text(max_size=30),
)


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build(tmp_path_factory.mktemp("escape"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS)
def test_no_path_reads_outside(shared_ws: Workspace, path: str) -> None:
    try:
        text = call_tool(shared_ws["read_file"], path=path)
    except ToolError:
        return
    assert "SECRET" not in text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS)
def test_no_path_writes_outside_or_into_the_trash(shared_ws: Workspace, path: str) -> None:
    before = shared_ws.outside_state()
    try:
        result = call_tool(shared_ws["write_file"], path=path, content="pwned")
    except ToolError:
        pass
    else:
        written = (shared_ws.root / result["path"]).resolve()
        assert shared_ws.root in written.parents
        assert shared_ws.trash.path not in written.parents
    assert shared_ws.outside_state() == before
    assert not (shared_ws.outside / "not-yet.txt").exists()
