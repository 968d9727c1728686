"""The floor: a bare Celery task making the same SDK call to the same fake LLM, and nothing else.

The task runs like Bobbin's kick: Celery's ``threads`` pool with the same
concurrency, late acks and prefetch 1, each task handing its coroutine to one
asyncio loop (uvloop, as in Bobbin) on a dedicated thread, an
``AsyncAnthropic`` client on one per-process ``httpx2`` pool sized like
Bobbin's. It streams the same request
Bobbin sends on a first turn (system prompt, the built-in tools' schemas, the
user's text), reads the stream to its end, then publishes one Redis message
so that the driver can stop its clock: no database, no events, no agent.

``python -m bench baseline`` measures the fake server's own floor first (a
direct SDK call loop in the driver: sequential latency and concurrent
capacity), then the bare task sequentially and for throughput. Benchmarks 1,
2 and 3 re-measure the bare task next to Bobbin so each comparison is of runs
made under the same conditions. ``python -m bench.baseline worker`` is the
worker process itself.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

import anthropic
import httpx2
import redis.asyncio as aioredis
import uvloop
from celery import Celery
from celery.signals import worker_init, worker_shutdown

TASK = "bench.baseline"
QUEUE = "bench.baseline"
MODEL = "claude-sonnet-4-6"


def request_params(text: str) -> dict[str, Any]:
    """The body Bobbin's Anthropic provider sends on an agent's first turn."""
    from shared.configuration import DEFAULT_SYSTEM_PROMPT
    from shared.llm import ChatMessage, ModelRequest
    from shared.providers.anthropic import _request_params
    from shared.tools import ToolExecutor, builtin_tools

    request = ModelRequest(
        model_id=MODEL,
        system=DEFAULT_SYSTEM_PROMPT,
        messages=[ChatMessage(role="user", content=text)],
        tools=ToolExecutor(builtin_tools(), {}).specs(),
    )
    return _request_params(request)


def make_app(redis_url: str) -> Celery:
    """Bobbin's own Celery configuration (``shared.queue.make_celery``), on its own queue."""
    from shared.queue import make_celery
    from shared.settings import Settings

    app = make_celery(Settings(redis_url=redis_url))
    app.conf.task_default_queue = QUEUE
    return app


def worker_env(fake_url: str, concurrency: int, channel: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOBBIN_", "BENCH_"))}
    env.update(
        BENCH_FAKE_URL=fake_url,
        BENCH_CONCURRENCY=str(concurrency),
        BENCH_DONE_CHANNEL=channel,
        BENCH_REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    return env


def new_channel() -> str:
    # Pub/sub channels are global to the Redis server, not per database index.
    return f"bench:{secrets.token_hex(6)}:baseline-done"


# -- the worker process ----------------------------------------------------------


class _Runtime:
    """One event loop on a dedicated thread, its SDK client and Redis client."""

    def __init__(self, fake_url: str, concurrency: int, redis_url: str, channel: str) -> None:
        self.loop = uvloop.new_event_loop()  # the loop a Bobbin worker runs
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._fake_url, self._concurrency = fake_url, concurrency
        self._redis_url, self.channel = redis_url, channel
        self.params = request_params("hello")

    def start(self) -> None:
        self._thread.start()
        self.call(self._open())

    async def _open(self) -> None:
        limits = httpx2.Limits(
            max_connections=self._concurrency + 10,
            max_keepalive_connections=self._concurrency + 10,
        )
        self.http = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(60.0, connect=10.0))
        self.client = anthropic.AsyncAnthropic(
            api_key="sk-bench", base_url=self._fake_url, max_retries=0, http_client=self.http
        )
        # Blocking, sized like Bobbin's (``shared.resources``): redis-py's default pool
        # raises "Too many connections" when hundreds of tasks publish at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            self._redis_url, max_connections=self._concurrency + 50, timeout=10
        )
        self.redis = aioredis.Redis.from_pool(pool)

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def model_call(self, token: str, text: str) -> None:
        params = {**self.params, "messages": [{"role": "user", "content": text}]}
        stream = await self.client.messages.create(**params, stream=True)
        async with stream:
            async for _ in stream:
                pass
        await self.redis.publish(self.channel, token)

    def stop(self) -> None:
        async def close() -> None:
            await self.http.aclose()
            await self.redis.aclose()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_worker() -> None:
    concurrency = int(os.environ["BENCH_CONCURRENCY"])
    redis_url = os.environ["BENCH_REDIS_URL"]
    runtime = _Runtime(
        os.environ["BENCH_FAKE_URL"], concurrency, redis_url, os.environ["BENCH_DONE_CHANNEL"]
    )
    app = make_app(redis_url)

    @app.task(name=TASK, ignore_result=True)
    def call_model(token: str, text: str) -> None:
        runtime.call(runtime.model_call(token, text))

    worker_init.connect(lambda **_: runtime.start(), weak=False)
    worker_shutdown.connect(lambda **_: runtime.stop(), weak=False)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            QUEUE,
            "-n",
            f"baseline-{os.getpid()}@%h",
        ]
    )


# -- the driver's side -------------------------------------------------------------


class BaselineClient:
    """Sends bare tasks and times them by their completion message."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.app = make_app(redis_url)
        self._redis_url, self._channel = redis_url, channel
        self.done: dict[str, float] = {}

    async def __aenter__(self) -> BaselineClient:
        self._redis = aioredis.Redis.from_url(self._redis_url)
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self._channel)
        while (await self._pubsub.get_message(timeout=5.0) or {}).get("type") != "subscribe":
            pass
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._pubsub.aclose()
        await self._redis.aclose()
        self.app.close()

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                self.done[message["data"].decode()] = time.perf_counter()
                self._changed.set()

    def send(self, text: str) -> str:
        token = secrets.token_hex(8)
        self.app.send_task(TASK, args=[token, text], queue=QUEUE, retry=False)
        return token

    async def wait(self, tokens: set[str] | str, timeout_s: float = 120) -> float:
        """Wait until every token is done; returns when the last one was."""
        wanted = {tokens} if isinstance(tokens, str) else tokens
        async with asyncio.timeout(timeout_s):
            while True:
                self._changed.clear()
                if wanted.issubset(self.done.keys()):
                    return max(self.done[t] for t in wanted)
                await self._changed.wait()

    async def one(self, text: str) -> float:
        """Latency of one bare task, from send to its completion message."""
        t0 = time.perf_counter()
        token = self.send(text)
        return await self.wait(token) - t0

    async def burst(self, count: int, timeout_s: float = 300) -> float:
        """Send ``count`` tasks as fast as possible; seconds until the last is done."""
        t0 = time.perf_counter()
        tokens = {self.send(f"message {i}") for i in range(count)}
        return await self.wait(tokens, timeout_s) - t0


async def fake_floor(fake_url: str, sequential: int, concurrent: int, calls: int) -> dict[str, Any]:
    """The fake server alone: a direct SDK call loop, then ``concurrent`` callers."""
    from bench.report import summary_ms

    params = request_params("hello")
    limits = httpx2.Limits(
        max_connections=concurrent + 10, max_keepalive_connections=concurrent + 10
    )
    async with httpx2.AsyncClient(limits=limits) as http:
        client = anthropic.AsyncAnthropic(
            api_key="sk-bench", base_url=fake_url, max_retries=0, http_client=http
        )

        async def call() -> float:
            t0 = time.perf_counter()
            stream = await client.messages.create(**params, stream=True)
            async with stream:
                async for _ in stream:
                    pass
            return time.perf_counter() - t0

        for _ in range(20):
            await call()
        latencies = [await call() for _ in range(sequential)]
        queue = iter(range(calls))

        async def caller() -> None:
            for _ in queue:
                await call()

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrent)))
        elapsed = time.perf_counter() - t0
    return {
        **summary_ms(latencies, "direct_sdk_"),
        "direct_sdk_calls_per_s": round(calls / elapsed, 1),
    }


def run(options: Any) -> list[Any]:
    from bench.harness import REDIS_URL, Bench
    from bench.report import Result, summary_ms

    smoke = options.smoke
    sequential, burst = (5, 50) if smoke else (300, 2000)
    concurrency = 100
    with Bench("baseline", options) as env:
        llm = env.fake()
        stats_before = llm.stats()
        calls = 200 if smoke else 3000
        cpu_before = env.fake_cpu_s()
        floor = asyncio.run(fake_floor(llm.base_url, sequential, 50, calls))
        fake_cpu_ms = (env.fake_cpu_s() - cpu_before) * 1000 / (calls + sequential + 20)
        floor["fake_cpu_ms_per_call"] = round(fake_cpu_ms, 3)
        stats = llm.stats()
        channel = new_channel()
        env.baseline_workers(2, concurrency, llm.base_url, channel)

        async def measure() -> dict[str, Any]:
            async with BaselineClient(REDIS_URL, channel) as client:
                await client.burst(200 if not smoke else 20)  # warm up both workers' pools
                latencies = [await client.one(f"message {i}") for i in range(sequential)]
                elapsed = await client.burst(burst)
            return {**summary_ms(latencies, "task_"), "task_turns_per_s": round(burst / elapsed, 1)}

        measured = asyncio.run(measure())
    nodelay = stats["connections_nodelay"] - stats_before["connections_nodelay"]
    accepted = stats["connections_accepted"] - stats_before["connections_accepted"]
    return [
        Result(
            bench="baseline",
            command="python -m bench baseline",
            metrics={**floor, **measured, "fake_nodelay_connections": f"{nodelay}/{accepted}"},
            params={
                "sequential": sequential,
                "burst_tasks": burst,
                "workers": 2,
                "concurrency": concurrency,
                "direct_concurrent_callers": 50,
            },
            notes="task latency: send_task -> completion message; throughput over 2 workers",
        )
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        run_worker()
    else:
        sys.exit("usage: python -m bench.baseline worker")
