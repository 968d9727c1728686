"""bash: a command in the working directory, scrubbed, bounded and killable.

The sandbox's own promises (what a command can reach, escapes, a fork bomb) are
in ``test_sandbox.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from pathlib import Path

import pytest

from shared.tools import ToolContext, ToolExecutor

from .conftest import Call


def marked_sleep() -> tuple[str, str]:
    """A ``sleep`` command that only this test runs, and the marker to find it by."""
    marker = f"30.{uuid.uuid4().int % 10**9:09d}"
    return f"sleep {marker}", marker


def running(marker: str) -> list[int]:
    """Host pids whose command line has ``marker`` (pids inside a sandbox are its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if marker.encode() in cmdline and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def gone(marker: str, wait_s: float = 3.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not running(marker):
            return True
        time.sleep(0.02)
    return False


async def started(marker: str, wait_s: float = 5.0) -> None:
    deadline = time.monotonic() + wait_s
    while not running(marker):
        assert time.monotonic() < deadline, f"{marker} never started"
        await asyncio.sleep(0.01)


async def test_bash_answers_combined_output_and_exit_code(call: Call) -> None:
    result = await call("bash", command="echo out; echo err >&2")

    assert result.status == "completed"
    assert result.content == "out\nerr\n[exit code 0]"


async def test_bash_with_a_non_zero_exit_fails_with_its_output(call: Call) -> None:
    result = await call("bash", command="echo oops; exit 3")

    assert result.status == "failed"
    assert result.content == "oops\n[exit code 3]"


async def test_bash_runs_in_the_working_directory_with_it_as_home(call: Call, root: Path) -> None:
    result = await call("bash", command='pwd; echo "$HOME"; touch made-here')

    assert result.content.splitlines()[:2] == [os.path.realpath(root)] * 2
    assert (root / "made-here").exists()


async def test_bash_environment_carries_no_credentials(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "canary-openai")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "canary-anthropic")
    monkeypatch.setenv("BOBBIN_SECRET_KEY", "canary-bobbin")
    monkeypatch.setenv("BOBBIN_DATABASE_URL", "canary-database")
    monkeypatch.setenv("GITHUB_TOKEN", "canary-token")
    monkeypatch.setenv("DB_PASSWORD", "canary-password")

    result = await call("bash", command="env")

    assert result.status == "completed"
    assert "canary" not in result.content
    names = {line.split("=", 1)[0] for line in result.content.splitlines() if "=" in line}
    # bash itself adds PWD, SHLVL and _.
    assert names <= {"PATH", "LANG", "LC_ALL", "TERM", "HOME", "TMPDIR", "PWD", "SHLVL", "_"}


async def test_bash_timeout_kills_every_process_of_the_command(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    sleep, marker = marked_sleep()
    started_at = time.monotonic()

    result = await executor.execute("bash", {"command": f"{sleep} & wait", "timeout_s": 0.5}, ctx)

    assert result.status == "failed"
    assert "timed out after 0.5 s" in result.content
    assert time.monotonic() - started_at < 5
    assert gone(marker)


async def test_bash_timeout_is_capped_by_the_context(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    short = dataclasses.replace(ctx, bash_timeout_s=0.3)

    result = await executor.execute("bash", {"command": "sleep 10", "timeout_s": 100}, short)

    assert result.status == "failed"
    assert "timed out after 0.3 s" in result.content


async def test_bash_background_jobs_do_not_outlive_the_command(call: Call) -> None:
    sleep, marker = marked_sleep()
    started_at = time.monotonic()

    result = await call("bash", command=f"{sleep} & echo started")

    assert result.content == "started\n[exit code 0]"
    assert time.monotonic() - started_at < 5
    assert gone(marker)


async def test_bash_output_keeps_its_start_and_end_within_the_cap(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    small = dataclasses.replace(ctx, output_cap_bytes=1000)
    command = "echo FIRST; head -c 200000 /dev/zero | tr '\\0' x; echo; echo LAST"

    result = await executor.execute("bash", {"command": command}, small)

    assert result.status == "completed"
    assert result.content.startswith("FIRST\n")
    assert result.content.endswith("LAST\n[exit code 0]")
    assert "bytes of output omitted" in result.content
    assert len(result.content.encode()) < 1200


async def test_cancelling_bash_kills_every_process_and_propagates(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    sleep, marker = marked_sleep()
    task = asyncio.create_task(executor.execute("bash", {"command": f"{sleep} & wait"}, ctx))
    await started(marker)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(marker)


async def test_bash_reads_nothing_from_stdin(call: Call) -> None:
    result = await call("bash", command="cat; echo done", timeout_s=5)

    assert result.content == "done\n[exit code 0]"
