"""1. Turn overhead: ``POST message`` -> ``turn_completed``, instant model, one turn at a time.

One API process (uvicorn, API keys required: every POST is authenticated),
one Bobbin worker and one bare baseline worker (both threads pool,
concurrency 100), the fake LLM in its own process. The driver alternates a
Bobbin turn and a bare task so both see the same machine load; a Bobbin turn
is timed from just before its POST to the arrival of its ``turn_completed``
on the session's Redis channel, a bare task from ``send_task`` to its
completion message. Turns rotate over 10 agents, so threads grow to ~25
turns (~100 events) as in a short conversation.
Target: Bobbin p50 <= 3x the baseline's p50 and <= 25 ms.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench import baseline, trace
from bench.driver import TurnWatcher, make_agents
from bench.harness import REDIS_URL, Api, Bench, Options, Proc, cpu_s, settle
from bench.report import Result, Target, percentile, summary_ms
from shared.resources import open_resources

COMMAND = "python -m bench overhead"


def run(options: Options) -> list[Result]:
    samples, agent_count, warm = (5, 2, 4) if options.smoke else (200, 10, 40)
    with Bench("overhead", options) as env:
        llm = env.fake()
        channel = baseline.new_channel()
        # With --profile, the worker and the API also trace every step of a turn.
        traced = options.profile
        (worker,) = env.workers(1, 100, wait=False, instrument=traced)
        (bare,) = env.baseline_workers(1, 100, llm.base_url, channel, wait=False)
        api = env.api(instrument=traced)
        env.ready(worker, bare)
        procs = {"worker": worker, "api": api.proc, "baseline_worker": bare}
        with env.profiled(worker, api.proc):
            measured, windows = asyncio.run(
                _measure(env, llm, api, channel, procs, samples, agent_count, warm)
            )
        memory = {"worker_rss_kib": worker.memory_kib(), "api_rss_kib": api.proc.memory_kib()}
        if traced:
            settle(0.3)
            records = trace.load(
                env.tmp / "counts-worker-0.trace.jsonl",
                env.tmp / "counts-api.trace.jsonl",
                process=["worker", "api"],
            )
            measured["waterfall"] = trace.waterfall(windows, records)
    bobbin_p50 = measured["bobbin_p50_ms"]
    base_p50 = measured["baseline_p50_ms"]
    return [
        Result(
            bench="overhead",
            command=COMMAND,
            metrics={**measured, "ratio_p50": round(bobbin_p50 / base_p50, 2), **memory},
            params={"samples": samples, "agents": agent_count, "warmup": warm, "concurrency": 100},
            targets=[
                Target("bobbin p50 / baseline p50", round(bobbin_p50 / base_p50, 2), "<=", 3),
                Target("bobbin p50 ms", bobbin_p50, "<=", 25),
            ],
            notes="bobbin: POST -> turn_completed on Redis; baseline: send_task -> done message",
        )
    ]


async def _measure(
    env: Bench,
    llm: Any,
    api: Api,
    channel: str,
    procs: dict[str, Proc],
    samples: int,
    agent_count: int,
    warm: int,
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """The figures, and each measured Bobbin turn's window (POST -> turn_completed seen)."""
    res = await open_resources(env.settings, concurrency=10)
    try:
        agents = await make_agents(res, llm, agent_count)
    finally:
        await res.aclose()
    async with (
        TurnWatcher(REDIS_URL, agents.session_ids) as watcher,
        baseline.BaselineClient(REDIS_URL, channel) as bare,
        httpx.AsyncClient(base_url=api.base_url, headers=api.headers, timeout=30) as http,
    ):
        windows: list[tuple[float, float]] = []

        async def bobbin_turn(i: int) -> tuple[float, float, float]:
            agent_id = agents.ids[i % len(agents.ids)]
            t0 = time.perf_counter()
            response = await http.post(
                f"/v1/agents/{agent_id}/messages", json={"content": f"message {i}"}
            )
            acked = time.perf_counter()
            if response.status_code != 202:
                raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
            times = await watcher.wait_closed(response.json()["turn"]["id"])
            if times.closing_type != "turn_completed" or times.closed is None:
                raise RuntimeError(f"turn ended {times.closing_type}")
            windows.append((t0, times.closed))
            return times.closed - t0, acked - t0, (times.started or times.closed) - t0

        for i in range(warm):
            await bobbin_turn(i)
            await bare.one(f"warm {i}")
        windows.clear()
        bobbin, acks, starts, bare_times = [], [], [], []
        cpu_before = {name: cpu_s(proc.pid) for name, proc in procs.items()}
        for i in range(samples):
            total, ack, start = await bobbin_turn(warm + i)
            bobbin.append(total)
            acks.append(ack)
            starts.append(start)
            bare_times.append(await bare.one(f"message {i}"))
        cpu = {
            f"{name}_cpu_ms_per_turn": round(
                (cpu_s(proc.pid) - cpu_before[name]) * 1000 / samples, 2
            )
            for name, proc in procs.items()
        }
    return {
        **cpu,
        **summary_ms(bobbin, "bobbin_"),
        **summary_ms(bare_times, "baseline_"),
        "post_ack_p50_ms": round(percentile(acks, 50) * 1000, 2),
        "to_turn_started_p50_ms": round(percentile(starts, 50) * 1000, 2),
    }, windows
