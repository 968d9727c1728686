"""file_find (names by glob) and file_search (contents by regex)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.tools.search import MAX_SEARCH_MATCHES

from .conftest import Call


@pytest.fixture
def tree(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("import pkg\nprint('hello')\n")
    (root / "src" / "pkg" / "util.py").write_text("def hello():\n    return 'hello'\n")
    (root / "README.md").write_text("# Hello project\n")
    (root / ".git").mkdir()
    (root / ".git" / "config.py").write_text("hello = 'from git'\n")
    return root


async def test_file_find_matches_a_recursive_glob(call: Call, tree: Path) -> None:
    result = await call("file_find", pattern="**/*.py")

    assert result.status == "completed"
    assert result.content.splitlines() == ["src/main.py", "src/pkg/util.py"]


async def test_file_find_marks_directories(call: Call, tree: Path) -> None:
    result = await call("file_find", pattern="src/*")

    assert result.content.splitlines() == ["src/main.py", "src/pkg/"]


async def test_file_find_says_when_nothing_matches(call: Call, tree: Path) -> None:
    result = await call("file_find", pattern="*.rs")

    assert (result.status, result.content) == ("completed", "no paths match '*.rs'")


@pytest.mark.parametrize("pattern", ["/etc/*", "../*", "src/../../*"])
async def test_file_find_refuses_patterns_leaving_the_working_directory(
    call: Call, tree: Path, pattern: str
) -> None:
    result = await call("file_find", pattern=pattern)

    assert result.status == "failed"


async def test_file_find_does_not_list_through_a_link_leading_outside(
    call: Call, root: Path, outside: Path
) -> None:
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "leak.txt").symlink_to(outside / "secret.txt")

    result = await call("file_find", pattern="escape/*")
    every = await call("file_find", pattern="**/*")

    assert result.content == "no paths match 'escape/*'"
    assert "secret" not in every.content
    assert "leak.txt" not in every.content


async def test_file_search_answers_path_line_and_text_of_each_match(call: Call, tree: Path) -> None:
    result = await call("file_search", pattern=r"hel+o")

    assert result.status == "completed"
    assert result.content.splitlines() == [
        "src/main.py:2: print('hello')",
        "src/pkg/util.py:1: def hello():",
        "src/pkg/util.py:2:     return 'hello'",
    ]


async def test_file_search_filters_by_glob_and_path(call: Call, tree: Path) -> None:
    by_name = await call("file_search", pattern="(?i)hello", glob="*.md")
    by_path = await call("file_search", pattern="hello", path="src/pkg")
    by_relative_glob = await call("file_search", pattern="hello", glob="src/pkg/*.py")

    assert by_name.content == "README.md:1: # Hello project"
    assert all(line.startswith("src/pkg/util.py:") for line in by_path.content.splitlines())
    assert by_relative_glob.content == by_path.content


async def test_file_search_searches_a_single_file(call: Call, tree: Path) -> None:
    result = await call("file_search", pattern="print", path="src/main.py")

    assert result.content == "src/main.py:2: print('hello')"


async def test_file_search_skips_binary_files(call: Call, root: Path) -> None:
    (root / "data.bin").write_bytes(b"needle\x00\x01\x02")
    (root / "text.txt").write_text("needle\n")

    result = await call("file_search", pattern="needle")

    assert result.content == "text.txt:1: needle"


async def test_file_search_skips_files_linked_from_outside(
    call: Call, root: Path, outside: Path
) -> None:
    (root / "leak.txt").symlink_to(outside / "secret.txt")

    result = await call("file_search", pattern="secret")

    assert result.content == "no matches for 'secret'"


async def test_file_search_stops_after_a_cap_of_matches(call: Call, root: Path) -> None:
    (root / "many.txt").write_text("match\n" * (MAX_SEARCH_MATCHES + 50))

    result = await call("file_search", pattern="match")

    lines = result.content.splitlines()
    assert len(lines) == MAX_SEARCH_MATCHES + 1
    assert lines[-1] == f"[stopped after {MAX_SEARCH_MATCHES} matches]"


async def test_file_search_reports_an_invalid_regex(call: Call, root: Path) -> None:
    result = await call("file_search", pattern="(unclosed")

    assert result.status == "failed"
    assert "invalid regular expression" in result.content
