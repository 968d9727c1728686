"""Redis crashes and comes back empty mid-run: the API and the workers reconnect on their own,
and turns whose kicks were queued in the lost Redis still run (the sweeper re-kicks them
from the database).

Regression: a worker holding an unacked kick while waiting for the next one exited with
"Unrecoverable error" when Redis went away (kombu touched its torn-down transport);
``workers/broker.py`` makes it reconnect.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis

from shared.keys import celery_queue
from shared.sessions import get_chat_session
from tests.chaos.cluster import Cluster
from tests.chaos.conftest import MakeCluster, api_client, new_agents, running_on, wait_row
from tests.chaos.streams import FollowedStream
from tests.chaos.verify import Sent, audit
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_redis_restart_loses_no_turn_and_every_process_reconnects(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=0, concurrency=2)
    assert cluster.llm is not None
    cluster.llm.script(Reply(text=" ".join(["long"] * 30), token_delay_s=0.15), "long")
    async with api_client(cluster) as client:
        agents = await new_agents(client, cluster, 4)
        session_id = agents[0].rsplit(".", 1)[0]
        stream = FollowedStream(client, f"/v1/sessions/{session_id}/events/stream").start()

        # 1. Kicks wait in Redis (no worker has taken them yet) when it crashes: they are lost.
        sent = [Sent(f"queued{n}", agents[n], f"queued before the crash {n}") for n in (2, 3)]
        for message in sent:
            message.turn_id = (await send(client, message.agent_id, message.content))["id"]
        queued_kicks = redis.Redis.from_url(cluster.redis.url()).llen(celery_queue())
        await asyncio.to_thread(cluster.redis.restart, 1.0)

        # 2. A worker has a turn in flight (its kick unacked) and a free slot when Redis
        #    crashes again: it must reconnect, not exit.
        worker = await asyncio.to_thread(cluster.start_worker)
        long = Sent("long", agents[0], "a long answer")
        long.turn_id = (await send(client, long.agent_id, long.content))["id"]
        sent.append(long)
        await wait_row(cluster, long.turn_id, running_on(worker.proc.pid))
        cluster.redis.stop(kill=True)
        outage = await _during_outage(client, agents[1])
        sent.append(Sent("outage", agents[1], "sent while Redis is down", outage["turn_id"]))
        await asyncio.to_thread(cluster.redis.start)
        restarted = time.monotonic()

        ready_after_s = await _ready_again(client)
        after = Sent("after", agents[2], "sent after the restart")
        after.turn_id = (await send(client, after.agent_id, after.content))["id"]
        sent.append(after)
        done = [await wait_turn(client, m.turn_id or "", timeout_s=30) for m in sent]
        drained_s = time.monotonic() - restarted
        final = await _session_head(cluster, session_id)
        assert await stream.wait_for(final, timeout_s=10)
        await stream.stop()

    print(f"figure: redis restart: ready after {ready_after_s:.1f} s, drained in {drained_s:.1f} s")
    assert queued_kicks == 2  # kicks really were waiting in the Redis that crashed
    assert outage["status"] == 202 and outage["readyz"] == 503 and outage["read"] == 200
    assert outage["checks"] == {"database": "ok", "redis": "unavailable"}
    assert [t["status"] for t in done] == ["completed"] * len(sent)
    assert worker.proc.poll() is None  # the worker reconnected instead of exiting
    assert "Unrecoverable error" not in worker.output
    assert stream.check(final) == (0, 0)  # no duplicate, no gap, across both restarts
    result = audit(cluster.db, sent)
    assert result.ok, result.problems()


async def _during_outage(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    """What the API answers while Redis is down: messages are accepted, reads work."""
    message = await client.post(
        f"/v1/agents/{agent_id}/messages", json={"content": "sent while Redis is down"}
    )
    ready = await client.get("/readyz")
    read = await client.get(f"/v1/agents/{agent_id}")
    return {
        "status": message.status_code,
        "turn_id": message.json()["turn"]["id"] if message.status_code == 202 else None,
        "readyz": ready.status_code,
        "checks": ready.json().get("checks"),
        "read": read.status_code,
    }


async def _ready_again(client: httpx.AsyncClient) -> float:
    started = time.monotonic()
    for _ in range(300):
        if (await client.get("/readyz")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError("/readyz did not recover within 30 s of Redis coming back")


async def _session_head(cluster: Cluster, session_id: str) -> int:
    row = await asyncio.to_thread(cluster.db.read_sync, get_chat_session, session_id)
    return int(row.session_seq)
