"""Child processes the CLI starts (worker, offline model, Redis) and stops by their own id.

Each child runs in its own session, so Ctrl-C in the terminal reaches only
the parent, which then stops its children in order (worker first, while
Redis still answers) with SIGTERM, then SIGKILL after a grace period. A
parent that is killed outright cannot do that: each child also gets SIGTERM
from the kernel when its parent dies (``setpriv --pdeathsig``, util-linux),
so no orphan worker goes on taking the queue's kicks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cli.common import fail

SETPRIV = shutil.which("setpriv")


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
        dies_with_parent = ["setpriv", "--pdeathsig", "TERM", "--"] if SETPRIV else []
        try:
            self.proc = subprocess.Popen(
                [*dies_with_parent, *self.command],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
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
