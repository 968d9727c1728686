"""Child processes the CLI starts (worker, offline model, Redis) and stops by their own id.

Each child runs in its own session, so Ctrl-C in the terminal reaches only
the parent, which then stops its children in order (worker first, while
Redis still answers) with SIGTERM, then SIGKILL after a grace period. A
parent that is killed outright cannot do that: each child also gets SIGTERM
from the kernel when its parent dies (``setpriv --pdeathsig``, util-linux),
so no orphan worker goes on taking the queue's kicks. setpriv arms that
signal a moment after the child starts; only a parent killed within that
moment leaves its child running.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from cli.common import fail


@functools.cache
def dies_with_parent() -> list[str]:
    """The prefix that gives a child SIGTERM when its parent dies; none where setpriv
    lacks ``--pdeathsig`` (util-linux before 2.33) or is missing."""
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    if prefix and subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        prefix = []
    return prefix


# Descriptors every child inherits: the data directory's lock (cli/dev.py), so that
# it lasts until the last child has exited even when the parent is killed outright.
_shared_fds: set[int] = set()


@contextlib.contextmanager
def shared_with_children(fd: int) -> Iterator[None]:
    """Children started inside this block hold ``fd`` open too."""
    _shared_fds.add(fd)
    try:
        yield
    finally:
        _shared_fds.discard(fd)


class Child:
    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Child:
        """Start with a fresh log file (so readiness checks see only this run)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        try:
            self.proc = subprocess.Popen(
                [*dies_with_parent(), *self.command],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                pass_fds=tuple(_shared_fds),
            )
        except OSError as exc:
            self._log.close()
            fail(f"cannot start {self.name}: {exc.strerror or exc}")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``ready`` until true; fails with the child's last log line if it exits first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if ready():
                return time.monotonic() - started
            if not self.running():
                fail(f"{self.name} exited: {self.last_log_line()} (log: {self.log_path})")
            time.sleep(0.1)
        fail(f"{self.name} was not {what} within {timeout_s:.0f} s (log: {self.log_path})")

    def log_contains(self, marker: bytes) -> bool:
        try:
            return marker in self.log_path.read_bytes()
        except OSError:
            return False

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "no output"

    def stop(self, timeout_s: float = 10) -> int | None:
        """SIGTERM to the child's process group, SIGKILL after ``timeout_s``; its exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode if self.proc else None

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)
