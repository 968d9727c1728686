"""The file tools: file_read, file_list, file_write, file_edit.

Each runs its blocking file work in a thread: one worker's event loop carries
many turns, and a slow disk must not stall the others.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import BinaryIO

from pydantic import Field

from shared.tools.base import Tool, ToolContext, ToolFailure, ToolInput, ToolResult, completed
from shared.tools.paths import (
    display,
    open_for_reading,
    open_for_writing,
    real_root,
    resolve_path,
)

DEFAULT_READ_LINES = 2000
MAX_LINE_BYTES = 16_000
MAX_LIST_ENTRIES = 1000
MAX_EDIT_BYTES = 10_000_000
BINARY_SNIFF_BYTES = 8192

_PATH_HELP = "Path relative to the working directory."


def looks_binary(head: bytes) -> bool:
    """A NUL byte near the start is the usual sign of a binary file (as git and grep judge)."""
    return b"\x00" in head


class FileReadInput(ToolInput):
    path: str = Field(description=_PATH_HELP)
    offset: int | None = Field(None, ge=1, description="First line to read, from 1.")
    limit: int | None = Field(
        None, ge=1, description=f"Most lines to read (default {DEFAULT_READ_LINES})."
    )


class FileRead(Tool):
    name = "file_read"
    description = (
        "Read a text file of the working directory. Long files come in parts: "
        "pass offset (first line, from 1) and limit (number of lines) to read on."
    )
    Input = FileReadInput
    reading = True

    async def run(self, args: FileReadInput, ctx: ToolContext) -> ToolResult:
        return completed(await asyncio.to_thread(_read_lines, args, ctx))


def _read_lines(args: FileReadInput, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    real = resolve_path(root, args.path)
    first, limit = args.offset or 1, args.limit or DEFAULT_READ_LINES
    with os.fdopen(open_for_reading(real, args.path), "rb") as f:
        if looks_binary(f.read(BINARY_SNIFF_BYTES)):
            raise ToolFailure(f"{args.path} looks like a binary file; file_read reads text")
        f.seek(0)
        kept: list[bytes] = []
        size, seen, more = 0, 0, False
        for seen, line in enumerate(_lines(f), start=1):
            if seen < first:
                continue
            if len(kept) == limit or size + len(line) > ctx.output_cap_bytes:
                more = True
                if not kept:  # one line longer than the cap: show its start
                    kept.append(line[: ctx.output_cap_bytes])
                break
            kept.append(line)
            size += len(line)
    if first > 1 and not kept:
        raise ToolFailure(f"offset {first} is past the end of {args.path} ({seen} lines)")
    text = b"".join(kept).decode("utf-8", errors="replace")
    if more:
        last = first + len(kept) - 1
        text += f"\n[showing lines {first}-{last}; pass offset={last + 1} to read on]"
    return text or f"({args.path} is empty)"


def _lines(f: BinaryIO) -> Iterator[bytes]:
    """The file's lines, each cut to ``MAX_LINE_BYTES`` (the rest of a long line is skipped)."""
    while line := f.readline(MAX_LINE_BYTES):
        if not line.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            line += b"\n" if rest else b""
        yield line


class FileListInput(ToolInput):
    path: str = Field(".", description="Directory relative to the working directory.")


class FileList(Tool):
    name = "file_list"
    description = (
        "List a directory of the working directory, one entry a line; "
        "directories end in '/', symbolic links in '@'."
    )
    Input = FileListInput
    reading = True

    async def run(self, args: FileListInput, ctx: ToolContext) -> ToolResult:
        return completed(await asyncio.to_thread(_list_directory, args.path, ctx))


def _list_directory(path: str, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    real = resolve_path(root, path)
    if not real.exists():
        raise ToolFailure(f"{path} does not exist")
    if not real.is_dir():
        raise ToolFailure(f"{path} is not a directory")
    with os.scandir(real) as entries:
        names = sorted(_list_name(entry) for entry in entries)
    if not names:
        return f"({path} is empty)"
    shown = names[:MAX_LIST_ENTRIES]
    if len(names) > len(shown):
        shown.append(f"[{len(names) - len(shown)} more entries not shown]")
    return "\n".join(shown)


def _list_name(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return f"{entry.name}@"
    return f"{entry.name}/" if entry.is_dir() else entry.name


class FileWriteInput(ToolInput):
    path: str = Field(description=_PATH_HELP)
    content: str = Field(description="The whole new content of the file.")


class FileWrite(Tool):
    name = "file_write"
    description = (
        "Write a text file of the working directory, replacing it if it exists; "
        "missing parent directories are created."
    )
    Input = FileWriteInput

    async def run(self, args: FileWriteInput, ctx: ToolContext) -> ToolResult:
        return completed(await asyncio.to_thread(_write_file, args, ctx))


def _write_file(args: FileWriteInput, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    real = resolve_path(root, args.path)
    if real == root:
        raise ToolFailure(f"{args.path} is the working directory itself")
    try:
        os.makedirs(real.parent, exist_ok=True)
    except OSError as exc:
        raise ToolFailure(f"cannot create the directory of {args.path}: {exc.strerror}") from exc
    existed = os.path.lexists(real)
    data = args.content.encode("utf-8")
    with os.fdopen(open_for_writing(real, args.path, create=True), "wb") as f:
        f.truncate(0)
        f.write(data)
    verb = "overwrote" if existed else "created"
    return f"{verb} {display(root, real)} ({len(data)} bytes)"


class FileEditInput(ToolInput):
    path: str = Field(description=_PATH_HELP)
    old: str = Field(min_length=1, description="Exact text to replace; must occur exactly once.")
    new: str = Field(description="Text to put in its place.")


class FileEdit(Tool):
    name = "file_edit"
    description = (
        "Replace one exact occurrence of `old` with `new` in a text file of the "
        "working directory. `old` must occur exactly once: include enough "
        "surrounding lines to make it unique."
    )
    Input = FileEditInput

    async def run(self, args: FileEditInput, ctx: ToolContext) -> ToolResult:
        return completed(await asyncio.to_thread(_edit_file, args, ctx))


def _edit_file(args: FileEditInput, ctx: ToolContext) -> str:
    root = real_root(ctx.working_directory)
    real = resolve_path(root, args.path)
    with os.fdopen(open_for_writing(real, args.path, create=False), "r+b") as f:
        data = f.read(MAX_EDIT_BYTES + 1)
        if len(data) > MAX_EDIT_BYTES:
            raise ToolFailure(f"{args.path} is larger than {MAX_EDIT_BYTES} bytes; not edited")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolFailure(f"{args.path} is not UTF-8 text; not edited") from exc
        count = text.count(args.old)
        if count == 0:
            raise ToolFailure(f"old text not found in {args.path}; nothing changed")
        if count > 1:
            raise ToolFailure(
                f"old text appears {count} times in {args.path}; include more surrounding "
                "text so it matches exactly once. Nothing changed"
            )
        f.seek(0)
        f.write(text.replace(args.old, args.new, 1).encode("utf-8"))
        f.truncate()
    return f"edited {display(root, real)}: replaced 1 occurrence"
