"""9. Flow control: a 429 storm, a healthy instance beside it, a limit held, a budget raced.

- **Storm.** The fake allows 20 model requests a second for the stormy key and
  answers 429 with ``Retry-After: 2`` beyond. 400 turns over 40 agents, 2
  workers (concurrency 100). With flow control the instance declares
  ``requests_per_minute: 1200`` (20 a second, one second's share at once);
  without, it declares no limit and only the providers' cooldowns slow the
  cluster down. Targets (with flow control): at most 5% of the provider's
  answers are 429s, all 400 turns complete, and the burst takes at most 1.3x
  the ideal schedule of 20 calls a second (20 s).
- **Isolation.** 50 turns on a second instance (another key, which the fake
  does not limit) sent at the storm's start finish with a p50 latency at
  most 1.5x their p50 with the workers idle: no worker slot is held by a
  waiting turn.
- **Limits.** ``output_tokens_per_minute: 1200`` (every answer 20 output
  tokens, ``max_output_tokens: 20``) over 60 s of a standing backlog: the
  tokens per minute the fake saw stay within 10% of the limit.
- **Budget.** 200 turns at once over 200 agents of one session whose budget is
  20 calls' cost (input free, 16 output tokens at a price the instance
  declares, ``max_output_tokens: 16``): the spend never exceeds the budget,
  and at least 18 calls' worth is spent.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from bench.driver import _epoch, _turn_states, enqueue_many, send_kicks, wait_finished
from bench.harness import Bench, Options
from bench.report import Result, Target
from shared.budgets import spent_usd
from shared.models import ChatSession, Turn
from shared.providers.instances import create_instance
from shared.queue import make_celery
from shared.resources import Resources, open_resources
from shared.sessions import create_chat_session, create_project, spawn_agent
from tests.fakellm import Reply

COMMAND = "python -m bench flow"
CONCURRENCY = 100
STORM_KEY, HEALTHY_KEY = "sk-stormy", "sk-healthy"
RATE_PER_S = 20


def run(options: Options) -> list[Result]:
    return [*_storms(options), _limits(options), _budget(options)]


# -- set-up ------------------------------------------------------------------------------


async def _instance(res: Resources, llm: Any, key: str, **declared: Any) -> str:
    encrypted = res.cipher.encrypt(key)

    def write(s: Session) -> str:
        view = create_instance(
            s,
            name=key,
            catalog_provider_id="anthropic",
            base_url=llm.base_url,
            timeout_s=30,
            encrypted_key=encrypted,
            **declared,
        )
        return view.id

    return await res.db.run(write)


async def _agents(
    res: Resources,
    instance: str,
    count: int,
    *,
    budget: dict[str, Any] | None = None,
    model_settings: dict[str, Any] | None = None,
    model_id: str = "claude-sonnet-4-6",
) -> tuple[str, list[str]]:
    """``count`` agents of one new session on ``instance``; returns (session, agents)."""
    configuration: dict[str, Any] = {"provider_instance_id": instance, "model_id": model_id}
    if model_settings:
        configuration["model_settings"] = model_settings

    def write(s: Session) -> tuple[str, list[str]]:
        project = create_project(s, "bench", None, configuration)
        s.flush()
        chat, first = create_chat_session(s, project.id, "bench", {}, budget)
        return chat.id, [first] + [spawn_agent(s, chat.id, f"a{n}", {}).id for n in range(1, count)]

    return await res.db.run(write)


async def _kick(app: Any, agents: list[str]) -> None:
    await asyncio.to_thread(send_kicks, app, agents)


def _latencies(states: list[tuple[Any, ...]], created: dict[str, float]) -> list[float]:
    return [_epoch(finished) - created[turn_id] for turn_id, finished in states if finished]


async def _finish_times(res: Resources, turn_ids: list[str]) -> list[tuple[str, Any]]:
    def read(s: Session) -> list[tuple[str, Any]]:
        rows = s.exec(select(Turn.id, Turn.finished_at).where(col(Turn.id).in_(turn_ids)))
        return [(turn_id, finished) for turn_id, finished in rows]

    return await res.db.read(read)


# -- the storm, and the healthy instance beside it ------------------------------------


def _storms(options: Options) -> list[Result]:
    turns, agents = (40, 8) if options.smoke else (400, 40)
    results = []
    for limited in (True, False):
        with Bench("flow-storm", options) as env:
            llm = env.fake()
            workers = env.workers(2, CONCURRENCY)
            metrics = asyncio.run(_storm(env, llm, turns, agents, limited))
            env.retire(*workers)
        ideal_s = turns / RATE_PER_S
        name = "flow[storm]" if limited else "flow[storm, no limits declared]"
        targets = []
        if limited:
            targets = [
                Target("429 share of provider answers", metrics["share_429"], "<=", 0.05),
                Target("turns completed", metrics["completed"], ">=", turns),
                Target("burst / ideal schedule", round(metrics["storm_s"] / ideal_s, 2), "<=", 1.3),
                Target(
                    "healthy p50 in the storm / idle",
                    metrics["healthy_p50_ratio"],
                    "<=",
                    1.5,
                ),
            ]
        results.append(
            Result(
                bench=name,
                command=COMMAND,
                metrics=metrics | {"ideal_s": ideal_s},
                params={"turns": turns, "agents": agents, "workers": 2, "rate_per_s": RATE_PER_S},
                targets=targets,
            )
        )
    return results


async def _storm(
    env: Bench, llm: Any, turns: int, agent_count: int, limited: bool
) -> dict[str, Any]:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        limits = {"requests_per_minute": RATE_PER_S * 60} if limited else {}
        stormy = await _instance(res, llm, STORM_KEY, limits=limits)
        healthy = await _instance(res, llm, HEALTHY_KEY)
        _, storm_agents = await _agents(res, stormy, agent_count)
        _, healthy_agents = await _agents(res, healthy, 50)
        # Idle: the healthy instance's 50 turns with the workers otherwise idle.
        idle = await _timed_burst(res, app, healthy_agents, "idle")
        llm.configure(requests_per_s=RATE_PER_S, retry_after_s=2, limited_keys=[STORM_KEY])
        before = llm.stats()
        messages = [(storm_agents[i % agent_count], f"storm {i}") for i in range(turns)]
        storm_ids = await enqueue_many(res, messages)
        started = time.time()
        await _kick(app, [a for a, _ in messages])
        during = await _timed_burst(res, app, healthy_agents, "storm")
        finished = await wait_finished(res, storm_ids, timeout_s=300)
        after = llm.stats()
    finally:
        app.close()
        await res.aclose()
    # Every request the fake served in the window, but for the healthy turns' (one each).
    served = after["requests_served"] - before["requests_served"] - len(healthy_agents)
    throttled = after["requests_throttled"] - before["requests_throttled"]
    idle_p50, storm_p50 = statistics.median(idle), statistics.median(during)
    return {
        "completed": finished.statuses.get("completed", 0),
        "failed": turns - finished.statuses.get("completed", 0),
        "storm_s": round(finished.last_finished_at - started, 2),
        "provider_requests": served,
        "answered_429": throttled,
        "share_429": round(throttled / served, 3) if served else 0.0,
        "healthy_idle_p50_ms": round(idle_p50 * 1000, 1),
        "healthy_storm_p50_ms": round(storm_p50 * 1000, 1),
        "healthy_p50_ratio": round(storm_p50 / idle_p50, 2),
    }


async def _timed_burst(res: Resources, app: Any, agents: list[str], label: str) -> list[float]:
    """One turn per agent at once; each turn's latency from its acceptance to its end."""
    ids = await enqueue_many(res, [(a, f"{label} hello") for a in agents])
    created = {turn_id: time.time() for turn_id in ids}
    await _kick(app, agents)
    await wait_finished(res, ids, timeout_s=300)
    return _latencies(await _finish_times(res, ids), created)


# -- a limit held over a minute ---------------------------------------------------------


def _limits(options: Options) -> Result:
    window_s = 10 if options.smoke else 60
    per_minute = 1200
    with Bench("flow-limits", options) as env:
        llm = env.fake()
        llm.script(Reply(text="twenty tokens", output_tokens=20), times=None)
        workers = env.workers(2, CONCURRENCY)
        seen = asyncio.run(_limited(env, llm, window_s, per_minute))
        env.retire(*workers)
    rate = seen * 60 / window_s
    return Result(
        bench="flow[limits]",
        command=COMMAND,
        metrics={"output_tokens_in_window": seen, "output_tokens_per_minute": round(rate, 1)},
        params={"output_tokens_per_minute": per_minute, "window_s": window_s},
        targets=[
            Target("tokens per minute / limit", round(rate / per_minute, 3), "<=", 1.1),
            Target("tokens per minute / limit (at least)", round(rate / per_minute, 3), ">=", 0.9),
        ],
    )


async def _limited(env: Bench, llm: Any, window_s: float, per_minute: int) -> int:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    try:
        instance = await _instance(
            res, llm, STORM_KEY, limits={"output_tokens_per_minute": per_minute}
        )
        _, agents = await _agents(res, instance, 20, model_settings={"max_output_tokens": 20})
        ids = await enqueue_many(res, [(agents[i % 20], f"limited {i}") for i in range(400)])
        started = time.time()
        await _kick(app, agents)
        await asyncio.sleep(window_s)
        times = await _finish_times(res, ids)
    finally:
        app.close()
        await res.aclose()
    ended = started + window_s
    return 20 * sum(1 for _, finished in times if finished and _epoch(finished) <= ended)


# -- a budget raced by 200 turns --------------------------------------------------------


def _budget(options: Options) -> Result:
    turns = 40 if options.smoke else 200
    calls_worth = 20
    with Bench("flow-budget", options) as env:
        llm = env.fake()
        llm.script(Reply(text="sixteen", output_tokens=16), times=None)
        workers = env.workers(2, CONCURRENCY)
        metrics = asyncio.run(_raced_budget(env, llm, turns, calls_worth))
        env.retire(*workers)
    return Result(
        bench="flow[budget]",
        command=COMMAND,
        metrics=metrics,
        params={"turns": turns, "budget_in_calls": calls_worth},
        targets=[
            Target("spent / budget", metrics["spent_over_budget"], "<=", 1.0),
            Target("calls' worth spent", metrics["calls_worth_spent"], ">=", calls_worth - 2),
        ],
    )


# Output tokens priced at $1,000 per Mtok (input free): 16 tokens cost $0.016 exactly, the
# same as the worst case a call reserves with max_output_tokens 16.
CALL_USD = Decimal("0.016")


async def _raced_budget(env: Bench, llm: Any, turns: int, calls_worth: int) -> dict[str, Any]:
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    budget = {"max_cost_usd": str(CALL_USD * calls_worth), "window": "total"}
    try:
        model = {"id": "bench-model", "cost_per_mtok_in": 0, "cost_per_mtok_out": 1000}
        instance = await _instance(res, llm, STORM_KEY, models=[model])
        session_id, agents = await _agents(
            res,
            instance,
            turns,
            budget=budget,
            model_settings={"max_output_tokens": 16},
            model_id="bench-model",
        )
        ids = await enqueue_many(res, [(a, "spend") for a in agents])
        await _kick(app, agents)
        finished = await wait_finished(res, ids, timeout_s=300)
        spent = await res.db.read(
            lambda s: spent_usd(s, session_id, s.get(ChatSession, session_id).budget)  # type: ignore[union-attr]
        )
        states = await res.db.read(_turn_states, ids)
    finally:
        app.close()
        await res.aclose()
    limit = CALL_USD * calls_worth
    return {
        "spent_usd": spent,
        "budget_usd": str(limit),
        "spent_over_budget": float(Decimal(spent or "0") / limit),
        "calls_worth_spent": float(Decimal(spent or "0") / CALL_USD),
        "completed": finished.statuses.get("completed", 0),
        "failed_budget_exceeded": finished.statuses.get("failed", 0),
        "turns_seen": len(states),
    }
