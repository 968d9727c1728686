"""SIGKILL mid-turn: the turn completes on another worker, or after the last allowed attempt
ends ``failed`` with ``worker_lost``; its durable events stay gapless and unduplicated.

(``tests/integration/workers/test_recovery.py`` kills a worker waiting on the model;
these kill it while tokens stream, while a tool runs, and on every attempt.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.chaos.conftest import (
    MakeCluster,
    api_client,
    new_agents,
    running_on,
    wait_requests,
    wait_row,
)
from tests.chaos.verify import Sent, audit
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply
from tests.sse import StreamCollector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DURABLE = {"system_prompt", "user_message", "turn_started", "agent_message", "turn_completed"}


async def test_turn_killed_while_streaming_completes_on_another_worker(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1)
    async with api_client(cluster) as client:
        [agent] = await new_agents(client, cluster)
        stream = await StreamCollector(client, f"/v1/agents/{agent}/events/stream").start()
        assert cluster.llm is not None
        cluster.llm.script(Reply(text=" ".join(f"w{i}" for i in range(100)), token_delay_s=0.1))
        turn = await send(client, agent, "tell me a long story")
        await stream.wait_for(lambda events: sum(e.event == "agent_token" for e in events) >= 3)

        cluster.kill_worker(cluster.workers[0])
        await asyncio.to_thread(cluster.start_worker)
        done = await wait_turn(client, turn["id"], timeout_s=40)
        await stream.wait_for(lambda events: any(e.event == "turn_completed" for e in events))
        await stream.stop()

    assert done["status"] == "completed", done
    assert done["attempt"] == 1 and done["output"] == "echo: tell me a long story"
    durable = [e for e in stream.events if e.event in DURABLE]
    assert [e.event for e in durable] == [
        "system_prompt",
        "user_message",
        "turn_started",
        "agent_message",
        "turn_completed",
    ]
    assert [int(e.id) for e in durable] == [1, 2, 3, 4, 5]
    result = audit(cluster.db, [Sent("m", agent, "tell me a long story", turn["id"])])
    assert result.ok, result.problems()


async def test_turn_whose_worker_dies_on_every_attempt_fails_with_worker_lost(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1, max_attempts=3)
    assert cluster.llm is not None
    # Three model calls, one per attempt (the fake's match also sees later messages, which an
    # Anthropic conversation merges into the unanswered user turn: so a count, not a match).
    cluster.llm.script(Reply(text="never sent", latency_s=60), match="doomed", times=3)
    async with api_client(cluster) as client:
        [agent] = await new_agents(client, cluster)
        doomed = await send(client, agent, "doomed turn")
        behind = await send(client, agent, "the next message")

        for attempt in range(3):
            worker = cluster.workers[-1]
            await wait_row(cluster, doomed["id"], running_on(worker.proc.pid))
            await wait_requests(cluster, attempt + 1)  # the model call is in flight
            cluster.kill_worker(worker)
            await asyncio.to_thread(cluster.start_worker)
        failed = await wait_turn(client, doomed["id"], timeout_s=30)
        after = await wait_turn(client, behind["id"], timeout_s=30)

    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost", failed
    assert failed["attempt"] == 3
    assert after["status"] == "completed"  # the agent is not blocked behind the lost turn
    sent = [
        Sent("doomed", agent, "doomed turn", doomed["id"]),
        Sent("behind", agent, "the next message", behind["id"]),
    ]
    result = audit(cluster.db, sent)
    assert result.ok, result.problems()
    assert dict(result.failed) == {"worker_lost": 1} and result.completed == 1


async def test_write_tool_cut_by_a_kill_is_aborted_not_run_twice(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    cluster = make_cluster(workers=1)
    assert cluster.llm is not None
    command = "echo $$ > pid; echo ran >> runs; sleep 20"
    cluster.llm.script(Reply(tool_calls=[("bash", {"command": command})]), match="run it")
    try:
        async with api_client(cluster) as client:
            [agent] = await new_agents(
                client, cluster, policies={"bash": "allow"}, working_directory=str(workspace)
            )
            turn = await send(client, agent, "run it")
            for _ in range(200):
                if (workspace / "runs").exists():
                    break
                await asyncio.sleep(0.05)
            cluster.kill_worker(cluster.workers[0])
            await asyncio.to_thread(cluster.start_worker)
            done = await wait_turn(client, turn["id"], timeout_s=40)
            events = (await client.get(f"/v1/agents/{agent}/events")).json()["events"]
    finally:  # bash runs in its own process group, which a SIGKILL of the worker leaves
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int((workspace / "pid").read_text()), signal.SIGKILL)

    assert done["status"] == "completed", done
    assert (workspace / "runs").read_text() == "ran\n"  # run once, never again
    calls = [e for e in events if e["type"] == "tool_call"]
    results = [e for e in events if e["type"] == "tool_result"]
    assert len(calls) == 1 and len(results) == 1
    assert results[0]["data"]["status"] == "aborted"
    assert results[0]["data"]["tool_call_id"] == calls[0]["data"]["tool_call_id"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    result = audit(cluster.db, [Sent("m", agent, "run it", turn["id"])])
    assert result.ok, result.problems()
