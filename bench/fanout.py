"""5. Fan-out: 500 SSE clients on one session, one API process.

One API process, one worker, the fake streaming its replies at 50 tokens/s
(20-word replies: each turn publishes ~28 events in ~0.4 s). The driver opens
500 streams on ``/v1/sessions/{id}/events/stream`` (``bench.sse``: raw
asyncio, HTTP/1.0), then runs 10 turns one after another, each once every
client has the previous turn's ``turn_completed``. A reference process
subscribed to the session's Redis channel timestamps each event as it is
published; an event's delivery latency is its arrival at a client minus its
arrival at the reference (both ``CLOCK_MONOTONIC``, one machine). Checked:
every client receives every event, in order (types and durable ids).
Reported: p50/p95/p99/max delivery latency, the API's RSS and CPU.

``python -m bench.fanout ref CHANNEL STOP_CHANNEL OUT`` is the reference process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.driver import TurnWatcher, enqueue_many, make_agents, send_kicks
from bench.harness import REDIS_URL, Api, Bench, Options, cpu_s
from bench.report import Result, Target, summary_ms
from bench.sse import SSEClient, open_stream
from shared.keys import session_channel
from shared.queue import make_celery
from shared.resources import open_resources

COMMAND = "python -m bench fanout"
TOKEN_DELAY_S = 0.02
MESSAGE = " ".join(f"word{i}" for i in range(19))  # echoed: 20 streamed words


def run(options: Options) -> list[Result]:
    clients, turns = (10, 2) if options.smoke else (500, 10)
    with Bench("fanout", options) as env:
        llm = env.fake("--token-delay-s", str(TOKEN_DELAY_S))
        (worker,) = env.workers(1, 100, wait=False)
        api = env.api()
        env.ready(worker)
        with env.profiled(api.proc):
            measured = asyncio.run(_measure(env, llm, api, clients, turns))
        memory = api.proc.memory_kib()
    complete = measured.pop("complete_clients")
    return [
        Result(
            bench="fanout",
            command=COMMAND,
            metrics={
                **measured,
                "clients_with_every_event": f"{complete}/{clients}",
                "api_rss_kib": memory.get("VmRSS"),
                "api_peak_rss_kib": memory.get("VmHWM"),
            },
            params={"clients": clients, "turns": turns, "token_delay_s": TOKEN_DELAY_S},
            targets=[Target("clients with every event", complete, ">=", clients)],
        )
    ]


async def _measure(env: Bench, llm: Any, api: Api, clients: int, turns: int) -> dict[str, Any]:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        agents = await make_agents(res, llm, 1)
        agent_id, session_id = agents.ids[0], agents.session_ids[0]
        stop_channel = f"bench:fanout-stop:{session_id}"
        out = env.tmp / "reference.json"
        ref = env.start(
            "reference",
            [
                sys.executable,
                "-m",
                "bench.fanout",
                "ref",
                session_channel(session_id),
                stop_channel,
                str(out),
            ],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ref.wait_for_log(b"ready")
        path = f"/v1/sessions/{session_id}/events/stream"
        gate = asyncio.Semaphore(50)

        async def connect() -> SSEClient:
            async with gate:
                return await open_stream(api.base_url, path, api.key, timeout_s=60)

        t0 = time.monotonic()
        streams = await asyncio.gather(*(connect() for _ in range(clients)))
        connect_s = time.monotonic() - t0
        api_cpu_before = cpu_s(api.proc.pid)
        async with TurnWatcher(REDIS_URL, [session_id]) as watcher:
            for i in range(turns):
                await enqueue_many(res, [(agent_id, MESSAGE)])
                await asyncio.to_thread(send_kicks, app, [agent_id])
                await watcher.wait_count(i + 1, timeout_s=60)
                await _all_have(streams, "turn_completed", i + 1)
        api_cpu = cpu_s(api.proc.pid) - api_cpu_before
        publisher = redis.Redis.from_url(REDIS_URL)
        publisher.publish(stop_channel, b"stop")
        publisher.close()
        ref.proc.wait(30)
        reference = json.loads(out.read_text())
        for stream in streams:
            stream.close()
    finally:
        app.close()
        await res.aclose()
    return _compare(reference, streams) | {
        "connect_all_s": round(connect_s, 2),
        "api_cpu_s_during_turns": round(api_cpu, 2),
    }


async def _all_have(
    streams: list[SSEClient], type_: str, count: int, timeout_s: float = 120
) -> None:
    async with asyncio.timeout(timeout_s):
        for stream in streams:
            while sum(f.type == type_ for f in stream.frames) < count:
                stream.changed.clear()
                await stream.changed.wait()


def _compare(reference: list[list[Any]], streams: list[SSEClient]) -> dict[str, Any]:
    """Latencies per (client, event), and how many clients got exactly the reference's events."""
    want_types = [r[1] for r in reference]
    want_ids = [str(r[2]) for r in reference if r[2] is not None]
    latencies: list[float] = []
    complete = 0
    for stream in streams:
        frames = [f for f in stream.frames if f.type]
        got_ids = [f.id for f in frames if "." not in f.id]
        if [f.type for f in frames] == want_types and got_ids == want_ids:
            complete += 1
        latencies += [f.t - r[0] for f, r in zip(frames, reference, strict=False)]
    return {
        "events_per_client": len(reference),
        "complete_clients": complete,
        **summary_ms(latencies, "delivery_"),
    }


def reference(channel: str, stop_channel: str, out: str) -> None:
    """Timestamp every message on ``channel`` until ``stop_channel`` says stop."""
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(channel, stop_channel)
    confirmed = 0
    while confirmed < 2:
        message = pubsub.get_message(timeout=5)
        confirmed += bool(message and message["type"] == "subscribe")
    print("ready", flush=True)
    events: list[tuple[float, bytes]] = []
    while True:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is None:
            continue
        now = time.monotonic()
        if message["channel"] == stop_channel.encode():
            break
        events.append((now, message["data"]))
    rows = []
    for t, data in events:
        envelope = json.loads(data)
        rows.append([t, envelope["type"], envelope.get("session_seq")])
    Path(out).write_text(json.dumps(rows))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "ref":
        reference(*sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.fanout ref CHANNEL STOP_CHANNEL OUT")
