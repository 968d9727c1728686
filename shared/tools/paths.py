"""Confinement of tool paths to the working directory.

Every path a tool receives from the model goes through ``resolve_path``:

- it must be relative, non-empty and free of NUL bytes;
- it may not contain ``..`` at all: the kernel applies ``..`` after following
  symbolic links, so ``link/../x`` can land anywhere and reasoning about it
  lexically is unsafe; a model never needs it;
- its real path (every symbolic link resolved, intermediate directories
  included) must lie inside the working directory's real path. Comparing real
  paths with the *resolved* root is what keeps a working directory reached
  through a symlinked parent usable, and refuses a link inside the root that
  points back up into that parent or anywhere else outside.

Files are then opened by their real path with ``O_NOFOLLOW``, so a final
component swapped for a link after the check is refused, and checked on the
open descriptor (``fstat``) so no later swap matters:

- only regular files are read or written (never a FIFO, which would block, or
  a device);
- a regular file with more than one hard link is refused, for reading and for
  writing. A hard link is a second name for the same file, and nothing in the
  name says where the other names live: a link planted in the workspace (by a
  command, an archive, a previous user) to a file outside it, on the same file
  system, passes every path check above, and writing through it would change
  that outside file. The link count is the only sign the kernel gives, and
  hard-linked files are rare in a project tree.

This confines the file tools; it is not a sandbox (``bash`` can do anything
its user can), and an intermediate directory swapped for a link between the
check and the open is outside what it promises.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from shared.tools.base import ToolFailure

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def real_root(working_directory: Path) -> Path:
    """The working directory's real path; ``ToolFailure`` when it is not a directory."""
    try:
        root = Path(os.path.realpath(working_directory, strict=True))
    except OSError as exc:
        raise ToolFailure(f"working directory is unavailable: {exc.strerror}") from exc
    if not root.is_dir():
        raise ToolFailure("working directory is not a directory")
    return root


def check_relative(path: str, *, what: str = "path") -> PurePosixPath:
    """``path`` as a relative path without NUL bytes or ``..``; ``ToolFailure`` otherwise."""
    if "\x00" in path:
        raise ToolFailure(f"{what} contains a NUL byte")
    if not path:
        raise ToolFailure(f"{what} is empty")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ToolFailure(
            f"{what} {path!r} is absolute: use a path relative to the working directory"
        )
    if ".." in pure.parts:
        raise ToolFailure(f"{what} {path!r} contains '..', which tool paths may not use")
    return pure


def is_inside(root: Path, real: str | Path) -> bool:
    """Whether the real path ``real`` is ``root`` or below it (``root`` already real)."""
    return Path(real).is_relative_to(root)


def resolve_path(root: Path, path: str) -> Path:
    """The real path that ``path`` names inside ``root`` (a real path; see ``real_root``).

    The target need not exist. Raises ``ToolFailure`` when the path is refused.
    """
    check_relative(path)
    real = os.path.realpath(root / path)
    if not is_inside(root, real):
        raise ToolFailure(
            f"path {path!r} leads outside the working directory (through a symbolic link)"
        )
    return Path(real)


def display(root: Path, real: Path) -> str:
    """``real`` as the model should see it: relative to the working directory."""
    return os.path.relpath(real, root)


def open_for_reading(real: Path, shown: str) -> int:
    """A descriptor of the regular file ``real``, checked as the module says."""
    fd = _open(real, shown, os.O_RDONLY)
    try:
        check_regular_file(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_for_writing(real: Path, shown: str, *, create: bool) -> int:
    """A read-write descriptor of ``real`` (created when ``create``), not yet truncated."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    fd = _open(real, shown, flags)
    try:
        check_regular_file(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular_file(fd: int, shown: str) -> os.stat_result:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise ToolFailure(f"{shown} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ToolFailure(f"{shown} is not a regular file")
    if info.st_nlink > 1:
        raise ToolFailure(
            f"{shown} has {info.st_nlink} hard links: hard-linked files are refused, "
            "since another name of the same file may lie outside the working directory"
        )
    return info


def _open(real: Path, shown: str, flags: int) -> int:
    try:
        return os.open(real, flags | _OPEN_FLAGS, 0o666)
    except FileNotFoundError as exc:
        raise ToolFailure(f"{shown} does not exist") from exc
    except IsADirectoryError as exc:
        raise ToolFailure(f"{shown} is a directory") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ToolFailure(f"{shown} changed into a symbolic link; refused") from exc
        if exc.errno == errno.ENXIO:
            raise ToolFailure(f"{shown} is not a regular file") from exc
        raise
