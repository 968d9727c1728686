"""file_read, file_list, file_write and file_edit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared.tools import ToolContext, ToolExecutor

from .conftest import Call


async def test_file_read_answers_the_text_of_a_file(call: Call, root: Path) -> None:
    (root / "notes.txt").write_text("first\nsecond\n")

    result = await call("file_read", path="notes.txt")

    assert result.status == "completed"
    assert result.content == "first\nsecond\n"


async def test_file_read_reads_a_window_of_lines_and_says_how_to_read_on(
    call: Call, root: Path
) -> None:
    (root / "lines.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))

    result = await call("file_read", path="lines.txt", offset=3, limit=2)

    assert result.content.startswith("line 3\nline 4\n")
    assert "line 5" not in result.content
    assert "offset=5" in result.content


async def test_file_read_past_the_end_fails_with_the_line_count(call: Call, root: Path) -> None:
    (root / "short.txt").write_text("one\ntwo\n")

    result = await call("file_read", path="short.txt", offset=5)

    assert result.status == "failed"
    assert "2 lines" in result.content


async def test_file_read_caps_the_text_it_answers(
    executor: ToolExecutor, ctx: ToolContext, root: Path
) -> None:
    (root / "big.txt").write_text("".join(f"{n:08d}\n" for n in range(10_000)))
    small = dataclasses.replace(ctx, output_cap_bytes=1000)

    result = await executor.execute("file_read", {"path": "big.txt"}, small)

    assert result.status == "completed"
    assert len(result.content.encode()) < 1200
    assert "pass offset=" in result.content


async def test_file_read_shows_the_start_of_a_line_longer_than_the_cap(
    executor: ToolExecutor, ctx: ToolContext, root: Path
) -> None:
    (root / "minified.js").write_text("x" * 50_000)
    small = dataclasses.replace(ctx, output_cap_bytes=1000)

    result = await executor.execute("file_read", {"path": "minified.js"}, small)

    assert result.content.startswith("x" * 1000)
    assert len(result.content) < 1200


async def test_file_read_refuses_a_binary_file(call: Call, root: Path) -> None:
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x01\x02")

    result = await call("file_read", path="image.bin")

    assert result.status == "failed"
    assert "binary" in result.content


async def test_file_read_of_a_missing_file_or_a_directory_fails_clearly(
    call: Call, root: Path
) -> None:
    (root / "dir").mkdir()

    missing = await call("file_read", path="nope.txt")
    directory = await call("file_read", path="dir")

    assert (missing.status, missing.content) == ("failed", "nope.txt does not exist")
    assert (directory.status, directory.content) == ("failed", "dir is a directory")


async def test_file_list_marks_directories_and_symlinks_in_name_order(
    call: Call, root: Path
) -> None:
    (root / "src").mkdir()
    (root / "b.txt").write_text("")
    (root / "a.txt").write_text("")
    (root / "link").symlink_to("a.txt")

    result = await call("file_list")

    assert result.status == "completed"
    assert result.content.splitlines() == ["a.txt", "b.txt", "link@", "src/"]


async def test_file_list_lists_a_subdirectory_and_says_when_it_is_empty(
    call: Call, root: Path
) -> None:
    (root / "src" / "empty").mkdir(parents=True)
    (root / "src" / "main.py").write_text("")

    assert (await call("file_list", path="src")).content == "empty/\nmain.py"
    assert (await call("file_list", path="src/empty")).content == "(src/empty is empty)"


async def test_file_list_of_a_file_fails(call: Call, root: Path) -> None:
    (root / "a.txt").write_text("")

    result = await call("file_list", path="a.txt")

    assert (result.status, result.content) == ("failed", "a.txt is not a directory")


async def test_file_write_creates_the_file_and_its_parent_directories(
    call: Call, root: Path
) -> None:
    result = await call("file_write", path="deep/er/new.txt", content="héllo\n")

    assert result.status == "completed"
    assert "deep/er/new.txt" in result.content
    assert (root / "deep" / "er" / "new.txt").read_text() == "héllo\n"


async def test_file_write_replaces_an_existing_file_whole(call: Call, root: Path) -> None:
    (root / "a.txt").write_text("a much longer old content\n")

    result = await call("file_write", path="a.txt", content="new\n")

    assert result.content.startswith("overwrote a.txt")
    assert (root / "a.txt").read_text() == "new\n"


async def test_file_write_onto_a_directory_fails(call: Call, root: Path) -> None:
    (root / "dir").mkdir()

    result = await call("file_write", path="dir", content="x")

    assert (result.status, result.content) == ("failed", "dir is a directory")


async def test_file_edit_replaces_the_one_occurrence(call: Call, root: Path) -> None:
    (root / "code.py").write_text("a = 1\nb = 2\n")

    result = await call("file_edit", path="code.py", old="b = 2", new="b = 3")

    assert result.status == "completed"
    assert (root / "code.py").read_text() == "a = 1\nb = 3\n"


async def test_file_edit_refuses_an_ambiguous_old_text_saying_how_many_times_it_appears(
    call: Call, root: Path
) -> None:
    (root / "code.py").write_text("x = 1\nx = 1\nx = 1\n")

    result = await call("file_edit", path="code.py", old="x = 1", new="x = 2")

    assert result.status == "failed"
    assert "appears 3 times" in result.content
    assert (root / "code.py").read_text() == "x = 1\nx = 1\nx = 1\n"


async def test_file_edit_refuses_an_old_text_that_is_absent(call: Call, root: Path) -> None:
    (root / "code.py").write_text("a = 1\n")

    result = await call("file_edit", path="code.py", old="b = 2", new="b = 3")

    assert result.status == "failed"
    assert "not found" in result.content
    assert (root / "code.py").read_text() == "a = 1\n"


async def test_file_edit_refuses_an_empty_old_text(call: Call, root: Path) -> None:
    (root / "code.py").write_text("a = 1\n")

    result = await call("file_edit", path="code.py", old="", new="b")

    assert result.status == "failed"
    assert "old:" in result.content


async def test_file_edit_refuses_a_file_that_is_not_utf8(call: Call, root: Path) -> None:
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))

    result = await call("file_edit", path="latin1.txt", old="caf", new="CAF")

    assert result.status == "failed"
    assert "not UTF-8" in result.content


async def test_file_edit_of_a_missing_file_fails(call: Call) -> None:
    result = await call("file_edit", path="nope.txt", old="a", new="b")

    assert (result.status, result.content) == ("failed", "nope.txt does not exist")
