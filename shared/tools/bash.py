"""The bash tool: one shell command in the working directory, in the sandbox.

The command runs under ``shared.tools.sandbox`` (its own namespaces, the
working directory its only writable place, no network, a bound on its
processes), started with a scrubbed environment, bounded in time and output.
Every process it starts ends when it ends, when it times out, or when the turn
is cancelled. A worker that cannot make the sandbox does not offer ``bash``,
unless its operator opted in to running it unsandboxed
(``BOBBIN_TOOLS_UNSANDBOXED``): then the command runs as the worker's user in
its own process group, killed with it, which is hygiene, not isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from pathlib import Path

from pydantic import Field

from shared.tools.base import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolInput,
    ToolResult,
    completed,
    failed,
)
from shared.tools.paths import real_root

BASH = "/bin/bash"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DRAIN_GRACE_S = 2.0
_SECRET_NAME = re.compile(r"^(BOBBIN_|ANTHROPIC_|OPENAI_)|KEY|TOKEN|SECRET|PASSWORD", re.I)


def scrubbed_environment(home: Path) -> dict[str, str]:
    """The only variables a command sees: PATH, LANG, LC_ALL, TERM, HOME and TMPDIR."""
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "TERM": "dumb",  # the reader is a model: no colours or cursor control
        "HOME": str(home),
        "TMPDIR": "/tmp",
    }
    if lc_all := os.environ.get("LC_ALL"):
        env["LC_ALL"] = lc_all
    # A guard against a future edit of the list above letting a secret through.
    return {name: value for name, value in env.items() if not _SECRET_NAME.search(name)}


class BashInput(ToolInput):
    command: str = Field(min_length=1, description="The command, run with /bin/bash -c.")
    timeout_s: float | None = Field(
        None, gt=0, description="Seconds before the command is killed (capped by the service)."
    )


class Bash(Tool):
    name = "bash"
    description = (
        "Run a shell command with /bin/bash -c in the working directory, without stdin "
        "and with a minimal environment. Answers the combined stdout and stderr and the "
        "exit code; long output keeps its start and end. Background processes are "
        "killed when the command ends."
    )
    Input = BashInput

    async def run(self, args: BashInput, ctx: ToolContext) -> ToolResult:
        cwd = real_root(ctx.working_directory)
        timeout_s = min(args.timeout_s or ctx.bash_timeout_s, ctx.bash_timeout_s)
        command = [BASH, "-c", args.command]
        sandbox = ctx.isolation.sandbox
        if sandbox is not None:
            async with sandbox.slot() as cgroup:
                argv = sandbox.argv(command, cwd, cgroup)
                return await _run(argv, cwd, timeout_s, ctx.output_cap_bytes)
        if ctx.isolation.unsandboxed:
            return await _run(command, cwd, timeout_s, ctx.output_cap_bytes)
        raise ToolFailure(f"bash is not available on this worker: {ctx.isolation.reason}")


async def _run(argv: list[str], cwd: Path, timeout_s: float, cap_bytes: int) -> ToolResult:
    transport, pipe, write_fd = await _output_pipe(cap_bytes)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                # The sandbox's first process too starts scrubbed: its environ is readable
                # from inside (/proc/1/environ).
                env=scrubbed_environment(cwd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        exit_code = await _wait(proc, pipe, timeout_s)
    finally:
        transport.close()
    return _result(pipe.output.text(), exit_code, timeout_s)


async def _wait(
    proc: asyncio.subprocess.Process, pipe: _OutputPipe, timeout_s: float
) -> int | None:
    """The shell's exit code, or None when it timed out; its process group is gone after."""
    exit_code: int | None = None
    try:
        async with asyncio.timeout(timeout_s):
            exit_code = await proc.wait()
    except TimeoutError:
        pass
    finally:
        # Runs on cancellation too (CancelledError then propagates): the
        # command, or after its exit its background jobs, must not live on.
        _kill_group(proc.pid)
        await proc.wait()
        # The rest of the output, bounded: a daemon that left the group may hold the pipe.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipe.closed, DRAIN_GRACE_S)
    return exit_code


def _result(text: str, exit_code: int | None, timeout_s: float) -> ToolResult:
    sep = "\n" if text and not text.endswith("\n") else ""
    if exit_code is None:
        return failed(f"{text}{sep}[timed out after {timeout_s:g} s; the command was killed]")
    if exit_code < 0:
        return failed(f"{text}{sep}[killed by signal {-exit_code}]")
    outcome = completed if exit_code == 0 else failed
    return outcome(f"{text}{sep}[exit code {exit_code}]")


def _kill_group(pgid: int) -> None:
    # start_new_session made the shell a session and group leader: its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _output_pipe(
    cap_bytes: int,
) -> tuple[asyncio.ReadTransport, _OutputPipe, int]:
    """A pipe the command writes its stdout and stderr to, read into a ``CappedOutput``.

    The pipe is ours, not the subprocess's, so waiting for the shell does not
    wait for every background process holding the pipe open, and closing the
    transport never depends on them.
    """
    read_fd, write_fd = os.pipe()
    read_end = os.fdopen(read_fd, "rb", buffering=0)
    try:
        transport, pipe = await asyncio.get_running_loop().connect_read_pipe(
            lambda: _OutputPipe(cap_bytes), read_end
        )
    except BaseException:
        read_end.close()
        os.close(write_fd)
        raise
    return transport, pipe, write_fd


class _OutputPipe(asyncio.Protocol):
    def __init__(self, cap_bytes: int) -> None:
        self.output = CappedOutput(cap_bytes)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.output.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class CappedOutput:
    """Keeps the first and the last half of ``cap_bytes`` of a stream; counts the rest."""

    def __init__(self, cap_bytes: int) -> None:
        self._half = max(cap_bytes // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            del self._tail[: -self._half]

    def text(self) -> str:
        omitted = self._total - len(self._head) - len(self._tail)
        if not omitted:
            return bytes(self._head + self._tail).decode("utf-8", errors="replace")
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        return f"{head}\n[... {omitted} bytes of output omitted ...]\n{tail}"
