"""2. Throughput: 2,000 turns over 100 agents, instant model, 2 worker processes.

Both workers run with the default concurrency (100). After a warm-up round
(one turn per agent), the driver stores the 2,000 messages as queued turns
through ``enqueue_turn`` (the API's transaction, untimed), then starts the
clock and publishes one kick per turn, as the API does after each message;
the clock stops at the last ``finished_at`` the workers record on the turns
(the database is authoritative: a live event can be lost). The baseline
sends 2,000 bare tasks to 2 bare workers of the same concurrency the same
way. Target: >= 150 turns/s and >= 50% of the baseline's turns/s.

``scenario()`` is shared with benchmark 8 (the same run on PostgreSQL, with
SQL statements counted in the workers).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench import baseline
from bench.driver import TurnWatcher, enqueue_many, make_agents, send_kicks, wait_finished
from bench.harness import REDIS_URL, Bench, Options, Proc, cpu_s, settle
from bench.report import Result, Target
from shared.queue import make_celery
from shared.resources import open_resources

COMMAND = "python -m bench throughput"
CONCURRENCY = 100


@dataclass
class Run:
    turns: int
    elapsed_s: float
    workers: list[Proc]
    failed: int
    counts_before: list[dict[str, Any]]
    cpu_s: float  # the workers' CPU over the timed window
    unseen: int  # closing events never published on Redis (publishing is best effort)
    # Per worker: turns finished and seconds from the first kick to its last finish
    # (how evenly the burst was shared).
    by_worker: list[tuple[int, float]]

    @property
    def turns_per_s(self) -> float:
        return round(self.turns / self.elapsed_s, 1)


def sizes(options: Options) -> tuple[int, int]:
    """(turns, agents)."""
    return (40, 10) if options.smoke else (2000, 100)


def run(options: Options) -> list[Result]:
    turns, agent_count = sizes(options)
    with Bench("throughput", options) as env:
        llm = env.fake()
        channel = baseline.new_channel()
        workers = env.workers(2, CONCURRENCY, wait=False)
        bare_workers = env.baseline_workers(2, CONCURRENCY, llm.base_url, channel, wait=False)
        env.ready(*workers, *bare_workers)
        bare_cpu = sum(cpu_s(w.pid) for w in bare_workers)
        bare_s = asyncio.run(_baseline(channel, turns))
        bare_cpu = sum(cpu_s(w.pid) for w in bare_workers) - bare_cpu
        env.retire(*bare_workers)  # the bare workers leave the machine to Bobbin
        bobbin = scenario(env, llm, turns, agent_count, workers=workers)
        memory = [w.memory_kib() for w in bobbin.workers]
        publish_failures = sum(w.log_count(b"event publish failed") for w in bobbin.workers)
        handed_off = sum(w.log_count(b"backlog handed to the queue") for w in bobbin.workers)
    bare_rate = round(turns / bare_s, 1)
    share = round(bobbin.turns_per_s / bare_rate, 2)
    return [
        Result(
            bench="throughput",
            command=COMMAND,
            metrics={
                "bobbin_turns_per_s": bobbin.turns_per_s,
                "bobbin_elapsed_s": round(bobbin.elapsed_s, 2),
                "baseline_turns_per_s": bare_rate,
                "share_of_baseline": share,
                "failed_turns": bobbin.failed,
                "closing_events_not_published": bobbin.unseen,
                "publish_failures_logged": publish_failures,
                "bobbin_worker_cpu_ms_per_turn": round(bobbin.cpu_s * 1000 / turns, 2),
                "baseline_worker_cpu_ms_per_task": round(
                    bare_cpu * 1000 / (turns + min(turns, 200)), 2
                ),
                "worker_turns_and_last_finish_s": bobbin.by_worker,
                "backlogs_handed_off": handed_off,
                "worker_rss_kib": memory,
            },
            params={
                "turns": turns,
                "agents": agent_count,
                "workers": 2,
                "concurrency": CONCURRENCY,
            },
            targets=[
                Target("bobbin turns/s", bobbin.turns_per_s, ">=", 150),
                Target("bobbin / baseline turns/s", share, ">=", 0.5),
            ],
        )
    ]


async def _baseline(channel: str, turns: int) -> float:
    async with baseline.BaselineClient(REDIS_URL, channel) as bare:
        await bare.burst(min(turns, 200))  # warm up: threads, pools
        return await bare.burst(turns)


def scenario(
    env: Bench,
    llm: Any,
    turns: int,
    agent_count: int,
    *,
    instrument: bool = False,
    workers: list[Proc] | None = None,
) -> Run:
    """Warm 2 workers up (started here unless given), then time ``turns`` backlogged turns
    over ``agent_count`` agents."""
    workers = workers or env.workers(2, CONCURRENCY, instrument=instrument)
    return asyncio.run(_scenario(env, llm, workers, turns, agent_count, instrument))


async def _scenario(
    env: Bench,
    llm: Any,
    workers: list[Proc],
    turns: int,
    agent_count: int,
    instrument: bool,
) -> Run:
    from bench.instrumented import read_counts

    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        agents = await make_agents(res, llm, agent_count)
        async with TurnWatcher(REDIS_URL, agents.session_ids) as watcher:
            warm = await enqueue_many(res, [(a, "warm up") for a in agents.ids])
            await asyncio.to_thread(send_kicks, app, agents.ids)
            await wait_finished(res, warm)
            settle(0.5)
            counts_before = [read_counts(p) for p in env.counts_files()] if instrument else []
            # The fake echoes each: "echo: message i", 3 streamed text deltas.
            messages = [(agents.ids[i % agent_count], f"message {i}") for i in range(turns)]
            turn_ids = await enqueue_many(res, messages)
            seen = watcher.closed
            cpu_before = sum(cpu_s(w.pid) for w in workers)
            t0 = time.time()
            with env.profiled(*workers):
                await asyncio.to_thread(send_kicks, app, [agent for agent, _ in messages])
                finished = await wait_finished(res, turn_ids)
            cpu = sum(cpu_s(w.pid) for w in workers) - cpu_before
            settle(0.5)
            unseen = turns - (watcher.closed - seen)
    finally:
        app.close()
        await res.aclose()
    settle(0.5)
    failed = turns - finished.statuses.get("completed", 0)
    elapsed = finished.last_finished_at - t0
    by_worker = sorted((count, round(last - t0, 2)) for count, last in finished.by_worker.values())
    return Run(turns, elapsed, workers, failed, counts_before, cpu, unseen, by_worker)
