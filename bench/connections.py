"""7. Connection reuse: TCP connections the workers open to the model server over 500 turns.

Two workers with concurrency 25 each (so at most 50 model calls in flight),
run under ``bench.instrumented`` so each counts the providers its registry
builds. 500 turns over 100 agents are stored and kicked, from a cold start
(no warm-up: every connection counts). The fake LLM counts the TCP
connections that carried a model request (``/_fake/stats``). Target:
connections <= the workers' total concurrency, while the workers built one
provider per turn (the pool is per process, providers are per turn).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.driver import enqueue_many, make_agents, send_kicks, wait_finished
from bench.harness import Bench, Options, settle
from bench.instrumented import read_counts
from bench.report import Result, Target
from shared.queue import make_celery
from shared.resources import open_resources

COMMAND = "python -m bench connections"
WORKERS, CONCURRENCY = 2, 25


def run(options: Options) -> list[Result]:
    turns, agent_count = (30, 10) if options.smoke else (500, 100)
    with Bench("connections", options) as env:
        llm = env.fake()
        env.workers(WORKERS, CONCURRENCY, instrument=True)
        failed = asyncio.run(_run_turns(env, llm, turns, agent_count))
        settle(0.5)
        stats = llm.stats()
        providers = sum(read_counts(p).get("providers_built", 0) for p in env.counts_files())
    bound = WORKERS * CONCURRENCY
    return [
        Result(
            bench="connections",
            command=COMMAND,
            metrics={
                "tcp_connections": stats["connections_accepted"],
                "tcp_nodelay_connections": stats["connections_nodelay"],
                "model_requests": stats["requests_served"],
                "providers_built": providers,
                "failed_turns": failed,
            },
            params={
                "turns": turns,
                "agents": agent_count,
                "workers": WORKERS,
                "concurrency": CONCURRENCY,
            },
            targets=[
                Target("tcp connections", stats["connections_accepted"], "<=", bound),
                Target("providers built (one per turn)", providers, ">=", turns),
            ],
        )
    ]


async def _run_turns(env: Bench, llm: Any, turns: int, agent_count: int) -> int:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        agents = await make_agents(res, llm, agent_count)
        messages = [(agents.ids[i % agent_count], f"message {i}") for i in range(turns)]
        turn_ids = await enqueue_many(res, messages)
        await asyncio.to_thread(send_kicks, app, [agent for agent, _ in messages])
        finished = await wait_finished(res, turn_ids)
        return turns - finished.statuses.get("completed", 0)
    finally:
        app.close()
        await res.aclose()
