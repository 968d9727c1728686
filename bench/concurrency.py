"""3. IO concurrency: model latency 2 s, 400 concurrent turns, one worker process.

One Bobbin worker with concurrency 400, the fake answering every call after
2 s. A first round (one turn for each of 400 agents) warms the worker up:
Celery's thread pool spawns its threads lazily and the HTTP pool opens its
connections. Then 400 more turns are stored as queued (untimed) and the
clock runs from the first of 400 kicks to the last ``finished_at`` recorded
on those turns. Also counted: closing events that never reached Redis.
Target: all done within 5 s. The worker's RSS (now and peak) is reported.

Side by side, first: the bare baseline (``bench.baseline``) in one worker of
the same concurrency against the same fake, a warm-up burst of 400 tasks,
then 400 timed from the first send to the last completion message, and its
worker's CPU over that round. This machine's speed varies by a third within
minutes, and this round is CPU-bound: the baseline says how fast the machine
ran.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench import baseline
from bench.driver import TurnWatcher, enqueue_many, make_agents, send_kicks, wait_finished
from bench.harness import REDIS_URL, Bench, Options, Proc, cpu_s
from bench.report import Result, Target
from shared.queue import make_celery
from shared.resources import open_resources

COMMAND = "python -m bench concurrency"
PUBLISH_FAILED = b"event publish failed"  # shared/bus.py's warning when Redis refuses
LATENCY_S = 2.0


def run(options: Options) -> list[Result]:
    turns, latency_s = (20, 0.5) if options.smoke else (400, LATENCY_S)
    with Bench("concurrency", options) as env:
        llm = env.fake("--latency-s", str(latency_s))
        bare_s, bare_cpu_s = _baseline(env, llm.base_url, turns)
        (worker,) = env.workers(1, turns)
        with env.profiled(worker):
            measured = asyncio.run(_measure(env, llm, turns, worker))
        memory = worker.memory_kib()
        publish_failures = worker.log_count(PUBLISH_FAILED)
        cpu = _cpu_s(worker)
    return [
        Result(
            bench="concurrency",
            command=COMMAND,
            metrics={
                "all_done_s": round(measured.round_s, 2),
                "cold_round_s": round(measured.cold_s, 2),
                "kicks_sent_s": round(measured.kicks_sent_s, 2),
                "last_turn_started_s": round(measured.last_started_s, 2),
                "round_worker_cpu_s": round(measured.round_cpu_s, 2),
                "failed_turns": measured.failed,
                "closing_events_not_published": measured.unseen,
                "publish_failures_logged": publish_failures,
                "worker_rss_kib": memory.get("VmRSS"),
                "worker_peak_rss_kib": memory.get("VmHWM"),
                "worker_cpu_s_total": cpu,
                "baseline_all_done_s": round(bare_s, 2),
                "all_done_vs_baseline": round(measured.round_s / bare_s, 2),
                "baseline_round_worker_cpu_s": round(bare_cpu_s, 2),
            },
            params={"turns": turns, "latency_s": latency_s, "workers": 1, "concurrency": turns},
            targets=[Target("all done s", round(measured.round_s, 2), "<=", 5.0)],
        )
    ]


def _cpu_s(proc: Proc) -> float:
    return round(cpu_s(proc.pid), 2)


def _baseline(env: Bench, fake_url: str, turns: int) -> tuple[float, float]:
    """The bare tasks' timed round (first send to last done) and their worker's CPU over it."""
    channel = baseline.new_channel()
    (bare,) = env.baseline_workers(1, turns, fake_url, channel)

    async def rounds() -> tuple[float, float]:
        async with baseline.BaselineClient(REDIS_URL, channel) as client:
            await client.burst(turns)  # warm up: threads, connections
            before = cpu_s(bare.pid)
            elapsed = await client.burst(turns)
            return elapsed, cpu_s(bare.pid) - before

    measured = asyncio.run(rounds())
    env.retire(bare)  # the bare worker leaves the machine to Bobbin
    return measured


@dataclass
class Measured:
    cold_s: float
    round_s: float  # the measured round: first kick to last finished_at
    kicks_sent_s: float  # how long the driver took to send its 400 kicks
    last_started_s: float  # first kick to the last turn's start
    round_cpu_s: float  # the worker's CPU over the measured round
    failed: int
    unseen: int  # closing events not published


async def _measure(env: Bench, llm: Any, turns: int, worker: Proc) -> Measured:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        agents = await make_agents(res, llm, turns)
        async with TurnWatcher(REDIS_URL, agents.session_ids) as watcher:
            rounds = []
            for label in ("cold", "measured"):
                turn_ids = await enqueue_many(res, [(a, f"{label} round") for a in agents.ids])
                seen = watcher.closed
                cpu_before = cpu_s(worker.pid)
                t0 = time.time()
                await asyncio.to_thread(send_kicks, app, agents.ids)
                sent_s = time.time() - t0
                finished = await wait_finished(res, turn_ids, timeout_s=120)
                rounds.append(finished.last_finished_at - t0)
            round_cpu_s = cpu_s(worker.pid) - cpu_before
            failed = turns - finished.statuses.get("completed", 0)
            await asyncio.sleep(0.5)
            unseen = turns - (watcher.closed - seen)
    finally:
        app.close()
        await res.aclose()
    return Measured(
        rounds[0], rounds[1], sent_s, finished.last_started_at - t0, round_cpu_s, failed, unseen
    )
