"""The Redis event sink: order, batching and what it does when Redis is away."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from shared.bus import RedisSink
from shared.events import Envelope
from shared.keys import session_channel
from tests.conftest import TEST_REDIS_URL


def _token(session_id: str, i: int) -> Envelope:
    return Envelope.ephemeral(
        "agent_token", session_id=session_id, agent_id=f"{session_id}.1", turn_id="t", text=str(i)
    )


async def _listen(redis: aioredis.Redis, channels: list[str]) -> aioredis.client.PubSub:
    pubsub = redis.pubsub()
    await pubsub.subscribe(*channels)
    for _ in channels:  # the subscribe confirmations
        await pubsub.get_message(timeout=1)
    return pubsub


async def _received(pubsub: aioredis.client.PubSub, count: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < count:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None, f"only {len(got)} of {count} events arrived"
        got.append(json.loads(message["data"]))
    return got


async def test_events_arrive_in_call_order_across_waiting_and_not_waiting() -> None:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    sink = RedisSink(redis)
    pubsub = await _listen(redis, [session_channel("s1"), session_channel("s2")])
    try:
        for i in range(300):  # no await between these: they pile up behind one flush
            sink.publish_nowait([_token("s1" if i % 2 else "s2", i)])
        durable = Envelope(type="turn_completed", session_id="s1", agent_id="s1.1", seq=1, data={})
        await sink.publish([durable])  # returns once sent: everything before it went first
        got = await _received(pubsub, 301)
        assert [e["data"]["text"] for e in got[:300]] == [str(i) for i in range(300)]  # type: ignore[index]
        assert got[-1]["type"] == "turn_completed"
    finally:
        await pubsub.aclose()
        await sink.aclose()
        await redis.aclose()


async def test_concurrent_publishers_share_pipelines() -> None:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    sink = RedisSink(redis)
    pipelines = 0
    original = redis.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return original(*args, **kwargs)

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    pubsub = await _listen(redis, [session_channel("s3")])
    try:
        await asyncio.gather(*(sink.publish([_token("s3", i)]) for i in range(200)))
        assert len(await _received(pubsub, 200)) == 200
        assert pipelines <= 3, f"{pipelines} round trips for 200 concurrent publishes"
    finally:
        await pubsub.aclose()
        await sink.aclose()
        await redis.aclose()


async def test_redis_away_neither_raises_nor_grows_without_bound() -> None:
    redis = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    sink = RedisSink(redis, max_backlog=50)
    try:
        await sink.publish([_token("s4", 0)])  # logged, not raised: streams backfill
        for i in range(200):
            sink.publish_nowait([_token("s4", i)])
        assert sink.dropped >= 150
        await sink.aclose()
    finally:
        await redis.aclose()
