"""A worker paused past its lease publishes nothing more to clients; with Redis down a new
stream answers 503 and a cancel still takes effect within a lease renewal.

Real processes: a private Redis, the API, workers (SIGSTOPped and SIGCONTed), the fake LLM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.chaos.conftest import MakeCluster, api_client, new_agents, running_on, wait_row
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply
from tests.sse import StreamCollector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_worker_paused_past_its_lease_publishes_no_more_tokens(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1)
    assert cluster.llm is not None
    stale = " ".join(f"a{i}" for i in range(40))
    cluster.llm.script(Reply(text=stale, token_delay_s=0.1))  # the first attempt's answer
    cluster.llm.script(Reply(text="b0 b1 b2"))  # the attempt that takes over
    async with api_client(cluster) as client:
        [agent] = await new_agents(client, cluster)
        stream = await StreamCollector(client, f"/v1/agents/{agent}/events/stream").start()
        turn = (await send(client, agent, "a long answer"))["id"]
        [first] = cluster.workers
        await wait_row(cluster, turn, running_on(first.proc.pid))
        await stream.wait_for(lambda events: len(tokens(events)) >= 3)

        os.killpg(first.proc.pid, signal.SIGSTOP)  # paused mid-stream, past its 4 s lease
        try:
            await asyncio.to_thread(cluster.start_worker)
            done = await wait_turn(client, turn, timeout_s=60)
            await stream.wait_for(lambda events: any(e.event == "turn_completed" for e in events))
        finally:
            os.killpg(first.proc.pid, signal.SIGCONT)
        await asyncio.sleep(3)  # the resumed worker reads the buffered rest of its answer
        await stream.stop()

    assert done["status"] == "completed" and done["output"] == "b0 b1 b2", done
    events = stream.events
    took_over = next(i for i, e in enumerate(events) if tokens([e]) and tokens([e])[0][0] == "b")
    late = [e.data["data"] for e in events[took_over:] if e.event in ("agent_token", "agent_state")]
    late_stale = [d for d in late if d.get("text", "").startswith("a")]
    assert late_stale == [], f"{len(late_stale)} tokens of the stale attempt reached the stream"
    closed = next(i for i, e in enumerate(events) if e.event == "turn_completed")
    assert not [e for e in events[closed:] if "." in e.id], "ephemeral events after the end"


def tokens(events: list) -> list[str]:
    return [e.data["data"]["text"] for e in events if e.event == "agent_token"]


async def test_with_redis_down_a_new_stream_answers_503_and_a_cancel_still_lands(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1)
    assert cluster.llm is not None and cluster.settings is not None
    cluster.llm.script(Reply(text=" ".join(["slow"] * 100), token_delay_s=0.1))
    async with api_client(cluster) as client:
        [agent, other] = await new_agents(client, cluster, 2)
        session = agent.rsplit(".", 1)[0]
        open_stream = await StreamCollector(client, f"/v1/sessions/{session}/events/stream").start()
        turn = (await send(client, agent, "a long answer"))["id"]
        await wait_row(cluster, turn, running_on(cluster.workers[0].proc.pid))

        cluster.redis.stop(kill=True)
        await asyncio.sleep(0.5)
        # (a bounded read: a stream opened anyway would never end)
        same_session = await client.get(f"/v1/sessions/{session}/events/stream", timeout=5)
        one_agent = await client.get(f"/v1/agents/{other}/events/stream", timeout=5)
        asked = time.monotonic()
        cancel = await client.post(f"/v1/turns/{turn}/cancel")
        answered_s = time.monotonic() - asked
        ended = await wait_turn(client, turn, timeout_s=30)
        cancelled_s = time.monotonic() - asked
        await open_stream.stop()

    print(
        f"figure: redis down: cancel answered in {answered_s:.2f} s, took effect in "
        f"{cancelled_s:.2f} s (lease renewal {cluster.settings.lease_renew_s:g} s)"
    )
    for refused in (same_session, one_agent):
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert refused.headers["retry-after"]
    assert cancel.status_code == 202 and answered_s < 1.5
    assert ended["status"] == "cancelled"
    assert cancelled_s < cluster.settings.lease_renew_s + 1.5
