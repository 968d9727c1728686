"""The search tools: file_find (names by glob) and file_search (contents by regex).

Neither follows a symbolic link out of the working directory, and neither
descends into version-control directories.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from shared.tools.base import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolInput,
    ToolResult,
    cap_text,
    completed,
)
from shared.tools.files import BINARY_SNIFF_BYTES, looks_binary
from shared.tools.paths import (
    check_relative,
    display,
    is_inside,
    open_for_reading,
    real_root,
    resolve_path,
)

MAX_FIND_RESULTS = 1000
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_FILE_BYTES = 5_000_000
MAX_MATCH_LINE_CHARS = 300
SKIPPED_DIRECTORIES = frozenset({".git", ".hg", ".svn"})


class FileFindInput(ToolInput):
    pattern: str = Field(
        min_length=1,
        description="Glob relative to the working directory, e.g. '*.md' or 'src/**/*.py' "
        "('**' matches any number of directories).",
    )


class FileFind(Tool):
    name = "file_find"
    description = (
        "Find files and directories of the working directory whose path matches a glob; "
        "directories end in '/'."
    )
    Input = FileFindInput
    reading = True

    async def run(self, args: FileFindInput, ctx: ToolContext) -> ToolResult:
        return completed(await asyncio.to_thread(_find, args.pattern, ctx))


def _find(pattern: str, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    check_relative(pattern, what="pattern")
    found: list[str] = []
    try:
        for path in root.glob(pattern):
            if len(found) > MAX_FIND_RESULTS:
                break
            if path != root and _inside(root, path) and not _in_skipped(root, path):
                found.append(_shown(root, path))
    except ValueError as exc:
        raise ToolFailure(f"invalid pattern {pattern!r}: {exc}") from exc
    if not found:
        return f"no paths match {pattern!r}"
    found.sort()
    if len(found) > MAX_FIND_RESULTS:
        return "\n".join(found[:MAX_FIND_RESULTS]) + "\n[more matches not shown]"
    return "\n".join(found)


def _inside(root: Path, path: Path) -> bool:
    return is_inside(root, os.path.realpath(path))


def _in_skipped(root: Path, path: Path) -> bool:
    return any(part in SKIPPED_DIRECTORIES for part in path.relative_to(root).parts)


def _shown(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return f"{rel}/" if path.is_dir() else rel


class FileSearchInput(ToolInput):
    pattern: str = Field(min_length=1, description="Regular expression (Python syntax).")
    path: str = Field(".", description="File or directory to search, relative.")
    glob: str | None = Field(
        None,
        description="Only files whose name matches this glob, e.g. '*.py'; "
        "a glob with '/' is matched against the relative path.",
    )


class FileSearch(Tool):
    name = "file_search"
    description = (
        "Search the text files of the working directory for a regular expression; "
        "answers 'path:line: text' per matching line. Binary files are skipped."
    )
    Input = FileSearchInput
    reading = True

    async def run(self, args: FileSearchInput, ctx: ToolContext) -> ToolResult:
        text = await asyncio.to_thread(_search, args, ctx)
        return completed(cap_text(text, ctx.output_cap_bytes))


def _search(args: FileSearchInput, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    start = resolve_path(root, args.path)
    if not start.exists():
        raise ToolFailure(f"{args.path} does not exist")
    try:
        regex = re.compile(args.pattern)
    except re.error as exc:
        raise ToolFailure(f"invalid regular expression {args.pattern!r}: {exc}") from exc
    lines: list[str] = []
    for path in _candidate_files(root, start, args.glob):
        lines.extend(_matches(root, path, regex))
        if len(lines) >= MAX_SEARCH_MATCHES:
            del lines[MAX_SEARCH_MATCHES:]
            lines.append(f"[stopped after {MAX_SEARCH_MATCHES} matches]")
            break
    return "\n".join(lines) if lines else f"no matches for {args.pattern!r}"


def _candidate_files(root: Path, start: Path, glob: str | None) -> Iterator[Path]:
    """Files under ``start`` in a stable order, filtered by ``glob``."""
    if not start.is_dir():
        yield start
        return
    for directory, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRECTORIES)
        for name in sorted(filenames):
            path = Path(directory, name)
            if glob is None or _glob_matches(glob, name, display(root, path)):
                yield path


def _glob_matches(glob: str, name: str, rel: str) -> bool:
    return fnmatch.fnmatch(rel if "/" in glob else name, glob)


def _matches(root: Path, path: Path, regex: re.Pattern[str]) -> list[str]:
    """Matching lines of one file; unreadable, outside, binary or huge files give none."""
    real = Path(os.path.realpath(path))
    if not is_inside(root, real):
        return []
    try:
        with os.fdopen(open_for_reading(real, display(root, path)), "rb") as f:
            data = f.read(MAX_SEARCH_FILE_BYTES + 1)
    except (ToolFailure, OSError):
        return []
    if len(data) > MAX_SEARCH_FILE_BYTES or looks_binary(data[:BINARY_SNIFF_BYTES]):
        return []
    shown = display(root, path)
    return [
        f"{shown}:{number}: {line[:MAX_MATCH_LINE_CHARS]}"
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1)
        if regex.search(line)
    ]
