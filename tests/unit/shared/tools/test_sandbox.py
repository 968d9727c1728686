"""The sandbox of tool processes: what a command run by ``bash`` can reach, and what it
cannot leave behind. Real bwrap, real namespaces and cgroups; the attacks are the ones
a model could try on a worker (the process running these tests plays the worker)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.tools import ToolContext, ToolExecutor
from shared.tools.sandbox import NOT_ISOLATED, ToolIsolation

from .conftest import Call
from .test_bash import gone, marked_sleep, running

CANARY = "worker-secret-canary-6f2e"


@pytest.fixture
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker's environment holds, in this (the worker's) process."""
    for name in ("BOBBIN_SECRET_KEY", "BOBBIN_DATABASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, f"{name}={CANARY}")


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections, as Redis and PostgreSQL do."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.usefixtures("worker_secrets")
async def test_no_process_environment_shows_the_workers_secrets(call: Call) -> None:
    command = "cat /proc/$PPID/environ /proc/1/environ /proc/*/environ | tr '\\0' '\\n'; env"

    result = await call("bash", command=command)

    assert "PATH=" in result.content
    assert CANARY not in result.content


async def test_the_command_sees_only_its_own_processes(call: Call) -> None:
    result = await call("bash", command="ls /proc | grep -c '^[0-9]'")

    # bwrap's init, the shell and ls (and grep): never the worker or its neighbours
    assert int(result.content.split()[0]) <= 5


async def test_nothing_outside_the_working_directory_is_visible(
    call: Call, outside: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "bobbin.db").write_text("the database")
    (data_dir / "secret.key").write_text("the key")

    result = await call(
        "bash",
        command=f"cat {outside}/secret.txt {data_dir}/bobbin.db {data_dir}/secret.key; "
        f"ls {tmp_path}; cat /etc/shadow; ls /root /work /home",
    )

    assert "outside secret" not in result.content
    assert "the database" not in result.content and "the key" not in result.content
    assert "work" not in result.content.split("No such file")[-1]  # no listing of tmp_path
    assert result.content.count("No such file or directory") >= 6


async def test_the_working_directory_is_writable_and_shared_with_the_file_tools(
    call: Call, root: Path
) -> None:
    result = await call("bash", command="echo made > made.txt && cat made.txt")

    assert result.status == "completed"
    assert (root / "made.txt").read_text() == "made\n"


async def test_no_connection_reaches_a_loopback_service(call: Call, listener: int) -> None:
    result = await call(
        "bash",
        command=f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo CONNECTED; "
        "exec 3<>/dev/tcp/127.0.0.1/6379 && echo CONNECTED",
    )

    assert "CONNECTED" not in result.content
    assert "Connection refused" in result.content or "unreachable" in result.content


async def test_an_operator_may_allow_the_network(
    executor: ToolExecutor, ctx: ToolContext, listener: int
) -> None:
    assert ctx.isolation.sandbox is not None
    sandbox = ctx.isolation.sandbox.__class__(
        ctx.isolation.sandbox.bwrap, ctx.isolation.sandbox.cgroups, network=True
    )
    networked = ToolContext(ctx.working_directory, isolation=ToolIsolation(sandbox))

    result = await executor.execute(
        "bash", {"command": f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo CONNECTED"}, networked
    )

    assert "CONNECTED" in result.content


@pytest.mark.parametrize(
    "escape",
    [
        "setsid {sleep} > /dev/null 2>&1 &",
        "nohup {sleep} > /dev/null 2>&1 &",
        "( ( {sleep} & ) & )",
        "setsid sh -c '{sleep} &' &",
    ],
)
async def test_no_process_outlives_its_command(call: Call, escape: str) -> None:
    sleep, marker = marked_sleep()

    result = await call("bash", command=escape.format(sleep=sleep) + "\nsleep 0.2; echo left")

    assert result.content.startswith("left")
    assert gone(marker), f"{running(marker)} outlived the command"


async def test_a_fork_bomb_is_bounded_and_cleaned_up(
    executor: ToolExecutor, ctx: ToolContext
) -> None:
    assert ctx.isolation.sandbox is not None
    limit = ctx.isolation.sandbox.pids_max
    sleep, marker = marked_sleep()
    endless = {"command": f"while :; do {sleep} & done", "timeout_s": 3}
    bomb = {"command": "b() { b | b & }; b; sleep 5", "timeout_s": 2}

    cgroups = ctx.isolation.sandbox.cgroups
    assert cgroups is not None
    before = set(cgroups.parent.glob("cmd-*"))

    forking = asyncio.create_task(executor.execute("bash", endless, ctx))
    peak = 0
    while not forking.done():
        peak = max(peak, len(running(marker)))
        await asyncio.sleep(0.05)
    bombed = await executor.execute("bash", bomb, ctx)

    assert limit // 2 < peak <= limit  # it did fork, up to the bound and no further
    assert (await forking).status == "failed" and gone(marker)
    assert bombed.status == "failed" and "timed out" in bombed.content
    assert set(cgroups.parent.glob("cmd-*")) <= before  # each command's cgroup removed
    follow_up = await executor.execute("bash", {"command": "echo still here"}, ctx)
    assert follow_up.content == "still here\n[exit code 0]"


async def test_without_a_sandbox_bash_refuses_and_says_why(
    executor: ToolExecutor, root: Path
) -> None:
    result = await executor.execute(
        "bash", {"command": "echo hi"}, ToolContext(root, isolation=NOT_ISOLATED)
    )

    assert result.status == "failed"
    assert "not available on this worker" in result.content


async def test_an_operator_may_opt_in_to_unsandboxed_bash(
    executor: ToolExecutor, root: Path
) -> None:
    unsandboxed = ToolIsolation(None, "no user namespaces", unsandboxed=True)
    sleep, marker = marked_sleep()

    result = await executor.execute(
        "bash", {"command": f"{sleep} & echo hi"}, ToolContext(root, isolation=unsandboxed)
    )

    assert result.content == "hi\n[exit code 0]"
    assert gone(marker)  # its process group is still killed with it
    await asyncio.sleep(0)
