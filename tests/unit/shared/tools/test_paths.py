"""Every file tool keeps to the working directory, whatever path the model sends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.tools import ToolContext, ToolExecutor
from shared.tools.paths import resolve_path

from .conftest import Call

# One call per file tool, each naming ``target``.
FILE_CALLS = [
    ("file_read", lambda target: {"path": target}),
    ("file_list", lambda target: {"path": target}),
    ("file_search", lambda target: {"pattern": "secret", "path": target}),
    ("file_write", lambda target: {"path": target, "content": "overwritten"}),
    ("file_edit", lambda target: {"path": target, "old": "outside", "new": "changed"}),
]


@pytest.mark.parametrize(("name", "arguments"), FILE_CALLS, ids=[n for n, _ in FILE_CALLS])
@pytest.mark.parametrize(
    "target",
    ["../outside/secret.txt", "sub/../../outside/secret.txt", "ok/../secret.txt"],
    ids=["dotdot", "nested-dotdot", "dotdot-staying-inside"],
)
async def test_paths_with_dotdot_are_refused(
    call: Call, outside: Path, name: str, arguments, target: str
) -> None:
    result = await call(name, **arguments(target))

    assert result.status == "failed"
    assert "'..'" in result.content
    assert (outside / "secret.txt").read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "arguments"), FILE_CALLS, ids=[n for n, _ in FILE_CALLS])
async def test_absolute_paths_are_refused(call: Call, outside: Path, name: str, arguments) -> None:
    result = await call(name, **arguments(str(outside / "secret.txt")))

    assert result.status == "failed"
    assert "absolute" in result.content
    assert (outside / "secret.txt").read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "arguments"), FILE_CALLS, ids=[n for n, _ in FILE_CALLS])
async def test_paths_with_a_nul_byte_are_refused(call: Call, name: str, arguments) -> None:
    result = await call(name, **arguments("a\x00b"))

    assert result.status == "failed"
    assert "NUL byte" in result.content


@pytest.mark.parametrize(("name", "arguments"), FILE_CALLS, ids=[n for n, _ in FILE_CALLS])
async def test_a_symlinked_file_pointing_outside_is_refused(
    call: Call, root: Path, outside: Path, name: str, arguments
) -> None:
    (root / "leak.txt").symlink_to(outside / "secret.txt")

    result = await call(name, **arguments("leak.txt"))

    assert result.status == "failed"
    assert "outside the working directory" in result.content
    assert (outside / "secret.txt").read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "arguments"), FILE_CALLS, ids=[n for n, _ in FILE_CALLS])
async def test_a_symlinked_directory_pointing_outside_is_refused(
    call: Call, root: Path, outside: Path, name: str, arguments
) -> None:
    (root / "escape").symlink_to(outside, target_is_directory=True)

    result = await call(name, **arguments("escape/secret.txt"))

    assert result.status == "failed"
    assert "outside the working directory" in result.content
    assert (outside / "secret.txt").read_text() == "outside secret\n"


async def test_writing_a_new_file_through_an_escaping_directory_link_creates_nothing(
    call: Call, root: Path, outside: Path
) -> None:
    (root / "escape").symlink_to(outside, target_is_directory=True)

    result = await call("file_write", path="escape/deeper/new.txt", content="x")

    assert result.status == "failed"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_a_dangling_symlink_pointing_outside_is_not_written_through(
    call: Call, root: Path, outside: Path
) -> None:
    (root / "trap.txt").symlink_to(outside / "created-by-the-tool.txt")

    result = await call("file_write", path="trap.txt", content="x")

    assert result.status == "failed"
    assert not (outside / "created-by-the-tool.txt").exists()


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("file_read", {"path": "link.txt"}),
        ("file_write", {"path": "link.txt", "content": "overwritten"}),
        ("file_edit", {"path": "link.txt", "old": "outside", "new": "changed"}),
    ],
    ids=["file_read", "file_write", "file_edit"],
)
async def test_a_hard_link_to_an_outside_file_is_refused(
    call: Call, root: Path, outside: Path, name: str, arguments: dict
) -> None:
    os.link(outside / "secret.txt", root / "link.txt")

    result = await call(name, **arguments)

    assert result.status == "failed"
    assert "hard links" in result.content
    assert (outside / "secret.txt").read_text() == "outside secret\n"


async def test_a_symlink_into_the_working_directory_is_followed(call: Call, root: Path) -> None:
    (root / "real.txt").write_text("inside\n")
    (root / "alias.txt").symlink_to(root / "real.txt")
    (root / "dir-alias").symlink_to(".", target_is_directory=True)

    assert (await call("file_read", path="alias.txt")).content == "inside\n"
    assert (await call("file_read", path="dir-alias/real.txt")).content == "inside\n"


async def test_a_working_directory_under_a_symlinked_parent_works_but_its_parent_is_refused(
    tmp_path: Path, executor: ToolExecutor
) -> None:
    real_parent = tmp_path / "real"
    (real_parent / "work").mkdir(parents=True)
    (real_parent / "other.txt").write_text("neighbour\n")
    (tmp_path / "linked").symlink_to(real_parent, target_is_directory=True)
    work = tmp_path / "linked" / "work"
    (work / "mine.txt").write_text("mine\n")
    (work / "up").symlink_to(tmp_path / "linked", target_is_directory=True)
    ctx = ToolContext(working_directory=work)

    mine = await executor.execute("file_read", {"path": "mine.txt"}, ctx)
    parent = await executor.execute("file_read", {"path": "up/other.txt"}, ctx)
    back_in = await executor.execute("file_read", {"path": "up/work/mine.txt"}, ctx)

    assert mine.content == "mine\n"
    assert parent.status == "failed"
    assert "outside the working directory" in parent.content
    assert back_in.content == "mine\n"


async def test_a_fifo_is_refused_without_blocking(call: Call, root: Path) -> None:
    os.mkfifo(root / "pipe")

    result = await call("file_read", path="pipe")

    assert result.status == "failed"
    assert "not a regular file" in result.content


def test_resolve_path_answers_the_real_path_inside_the_root(root: Path) -> None:
    real_root = Path(os.path.realpath(root))

    assert resolve_path(real_root, ".") == real_root
    assert resolve_path(real_root, "a/b.txt") == real_root / "a" / "b.txt"
