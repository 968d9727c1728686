"""4. Time to first token on the SSE stream from ``POST message``; the model streams 50 tokens/s.

The fake streams each word of its reply 20 ms after the previous one (the
first comes at once, as a model's first token does). The model's own
first-token time is measured first: a direct SDK streaming call from the
driver, to its first text delta. Then, with one API process and one worker,
the driver keeps an agent's SSE stream open and, one turn at a time, POSTs a
20-word message (the fake echoes it: 21 streamed words) and times from just
before the POST to the arrival of the turn's first ``agent_token`` frame.
Target: Bobbin's p50 at most 30 ms above the model's own p50.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import httpx
import httpx2

from bench.baseline import request_params
from bench.driver import make_agents
from bench.harness import Api, Bench, Options
from bench.report import Result, Target, percentile, summary_ms
from bench.sse import open_stream
from shared.resources import open_resources

COMMAND = "python -m bench ttft"
TOKEN_DELAY_S = 0.02  # 50 tokens/s
MESSAGE = " ".join(f"word{i}" for i in range(20))


def run(options: Options) -> list[Result]:
    samples, warm = (3, 2) if options.smoke else (40, 5)
    with Bench("ttft", options) as env:
        llm = env.fake("--token-delay-s", str(TOKEN_DELAY_S))
        (worker,) = env.workers(1, 100, wait=False)
        model = asyncio.run(_model_ttft(llm.base_url, samples, warm))
        api = env.api()
        env.ready(worker)
        with env.profiled(worker, api.proc):
            bobbin = asyncio.run(_bobbin_ttft(env, llm, api, samples, warm))
    model_p50 = percentile(model, 50) * 1000
    bobbin_p50 = percentile(bobbin, 50) * 1000
    above = round(bobbin_p50 - model_p50, 2)
    return [
        Result(
            bench="ttft",
            command=COMMAND,
            metrics={
                **summary_ms(bobbin, "bobbin_ttft_"),
                **summary_ms(model, "model_ttft_"),
                "p50_above_model_ms": above,
            },
            params={"samples": samples, "token_delay_s": TOKEN_DELAY_S, "reply_words": 21},
            targets=[Target("bobbin p50 - model p50 ms", above, "<=", 30)],
        )
    ]


async def _model_ttft(fake_url: str, samples: int, warm: int) -> list[float]:
    params = request_params(MESSAGE)
    async with httpx2.AsyncClient() as http:
        client = anthropic.AsyncAnthropic(
            api_key="sk-bench", base_url=fake_url, max_retries=0, http_client=http
        )
        times = []
        for i in range(warm + samples):
            t0 = time.monotonic()
            first = None
            stream = await client.messages.create(**params, stream=True)
            async with stream:
                async for event in stream:
                    if first is None and event.type == "content_block_delta":
                        first = time.monotonic() - t0
            if i >= warm and first is not None:
                times.append(first)
    return times


async def _bobbin_ttft(env: Bench, llm: Any, api: Api, samples: int, warm: int) -> list[float]:
    res = await open_resources(env.settings, concurrency=10)
    try:
        agents = await make_agents(res, llm, 1)
    finally:
        await res.aclose()
    agent_id = agents.ids[0]
    stream = await open_stream(api.base_url, f"/v1/agents/{agent_id}/events/stream", api.key)
    times = []
    try:
        async with httpx.AsyncClient(base_url=api.base_url, headers=api.headers) as http:
            for i in range(warm + samples):
                start = len(stream.frames)
                t0 = time.monotonic()
                response = await http.post(
                    f"/v1/agents/{agent_id}/messages", json={"content": MESSAGE}
                )
                response.raise_for_status()
                first = await stream.wait_for("agent_token", start)
                await stream.wait_for("turn_completed", first)
                if i >= warm:
                    times.append(stream.frames[first].t - t0)
    finally:
        stream.close()
    return times
