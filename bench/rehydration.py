"""6. Rehydration: rebuilding an agent from threads of 10 to 10,000 events, and making its provider.

In the driver process, on SQLite and on PostgreSQL: threads are filled with
a realistic mix (a system prompt, then turns of ``user_message``,
``turn_started``, ``agent_message`` of ~300 characters, ``turn_completed``,
every fourth turn with a ``tool_call`` and a ~300-character ``tool_result``).
Timed, as a worker does it: ``load`` = ``db.read(load_agent_context)``
(through the database executor), ``construct`` = ``rehydrate_agent`` given the
loaded state, ``conversation`` = ``build_conversation`` of the events (what
the first model request needs). ``rebuild`` = the three together, median of
repeats. ``provider`` = ``registry.create_provider_from_instance_and_model``
as a worker calls it, given the instance and credential its claim read (the
credential's decryption and the SDK client), median of 300;
``provider_own_read`` is the same call reading them itself (the CLI's path).
Targets: provider < 1 ms; rebuild per event at 10,000 events at most
1.25x the per-event cost at 1,000 (no worse than linear); 1,000 events < 20 ms.
``load_cached`` is the load of a worker's next claim on the agent: it holds
the thread as its last turn left it, and reads only the 4 events appended
since. The process freezes its start-up heap out of the GC's reach first, as a
worker does once it has started (``workers/runtime.py``).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import Session

from bench.harness import Bench, Options
from bench.report import Result, Target
from shared.agents.context import load_agent_context
from shared.agents.conversation import build_conversation
from shared.agents.factory import rehydrate_agent
from shared.events import NewEvent
from shared.leases import acquire_lease, release_lease
from shared.resources import Resources, open_resources
from shared.sink import MemorySink
from shared.threads import ThreadWriter, append_events
from tests.helpers import add_agent, add_instance

COMMAND = "python -m bench rehydration"
TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 5  # ~290 characters


def run(options: Options) -> list[Result]:
    sizes = (10, 100) if options.smoke else (10, 100, 1000, 10_000)
    results = []
    for db in ("sqlite", "postgres"):
        with Bench(f"rehydration-{db}", options, db=db) as env:
            results.append(asyncio.run(_measure(env, sizes, options.smoke)))
    return results


def thread_events(count: int) -> list[NewEvent]:
    events = [NewEvent.of("system_prompt", content="You are a helpful agent.")]
    turn = 0
    while len(events) < count:
        turn += 1
        events += [
            NewEvent.of("user_message", content=f"question {turn}: {TEXT[:80]}"),
            NewEvent.of("turn_started", provider_instance_id="pi_x", model_id="claude-sonnet-4-6"),
        ]
        if turn % 4 == 0:
            call = f"tc_{turn:016x}"
            events += [
                NewEvent.of(
                    "tool_call",
                    tool_call_id=call,
                    provider_call_id=f"toolu_{turn}",
                    tool="file_read",
                    arguments={"path": "README.md"},
                    round=1,
                ),
                NewEvent.of("tool_result", tool_call_id=call, status="completed", content=TEXT),
            ]
        events += [
            NewEvent.of("agent_message", content=TEXT),
            NewEvent.of("turn_completed", usage={"input_tokens": 100, "output_tokens": 50}),
        ]
    return events[:count]


async def _fill(res: Resources, agent_id: str, count: int) -> None:
    events = thread_events(count)

    def write(session: Session, batch: list[NewEvent]) -> None:
        lease = acquire_lease(session, agent_id, "bench", 60)
        assert lease is not None
        append_events(session, lease, "turn_bench", batch, lease.published_seq)
        release_lease(session, lease, lease.seq + len(batch))

    for start in range(0, count, 1000):
        await res.db.run(write, events[start : start + 1000])


async def _median_s(fn: Callable[[], Awaitable[Any]], repeats: int) -> float:
    await fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


async def _measure(env: Bench, sizes: tuple[int, ...], smoke: bool) -> Result:
    res = await open_resources(env.settings, concurrency=10)
    gc.collect()
    gc.freeze()
    try:
        instance = await add_instance(res, None, "anthropic", base_url="http://127.0.0.1:9")
        metrics: dict[str, Any] = {}
        per_event: dict[int, float] = {}
        for size in sizes:
            agent_id = await add_agent(res, instance, "anthropic")
            await _fill(res, agent_id, size)
            lease = await res.db.run(lambda s, a=agent_id: acquire_lease(s, a, "bench", 600))
            assert lease is not None
            writer = ThreadWriter(res.db, lease, MemorySink())
            state = await res.db.read(load_agent_context, agent_id)
            assert len(state.events) == size
            repeats = 3 if smoke else max(5, min(100, 20_000 // size))

            async def load(a: str = agent_id) -> Any:
                return await res.db.read(load_agent_context, a)

            async def load_cached(a: str = agent_id, known: Any = state.events[:-4]) -> Any:
                return await res.db.read(load_agent_context, a, known)

            async def construct(w: ThreadWriter = writer, s: Any = state) -> Any:
                return await rehydrate_agent(res, w, None, s)

            async def conversation(s: Any = state) -> Any:
                return build_conversation(s.events)

            async def rebuild(w: ThreadWriter = writer, a: str = agent_id) -> Any:
                agent = await rehydrate_agent(
                    res, w, None, await res.db.read(load_agent_context, a)
                )
                return build_conversation(agent.context.events)

            parts = {
                "load": await _median_s(load, repeats),
                "load_cached": await _median_s(load_cached, repeats),
                "construct": await _median_s(construct, repeats),
                "conversation": await _median_s(conversation, repeats),
                "rebuild": await _median_s(rebuild, repeats),
            }
            for part, seconds in parts.items():
                metrics[f"{part}_{size}_ms"] = round(seconds * 1000, 3)
            per_event[size] = parts["rebuild"] / size
        model = "claude-sonnet-4-6"
        claimed = await res.db.read(load_agent_context, agent_id)  # reads the instance too

        async def provider() -> Any:  # as a worker makes it: from its claim's read
            return await res.registry.create_provider_from_instance_and_model(
                instance, model, prefetched=claimed.prefetched
            )

        async def provider_reading() -> Any:  # with a read of its own (the CLI, tests)
            return await res.registry.create_provider_from_instance_and_model(instance, model)

        metrics["provider_ms"] = round(await _median_s(provider, 300) * 1000, 3)
        metrics["provider_own_read_ms"] = round(await _median_s(provider_reading, 300) * 1000, 3)
    finally:
        gc.unfreeze()
        await res.aclose()
    targets = [Target("provider creation ms", metrics["provider_ms"], "<", 1.0)]
    if 1000 in per_event and 10_000 in per_event:
        growth = round(per_event[10_000] / per_event[1000], 2)
        metrics["per_event_growth_1k_to_10k"] = growth
        targets += [
            Target("rebuild per-event cost 10k / 1k", growth, "<=", 1.25),
            Target("rebuild 1,000 events ms", metrics["rebuild_1000_ms"], "<", 20),
        ]
    return Result(
        bench=f"rehydration[{env.db}]",
        command=COMMAND,
        metrics=metrics,
        params={"sizes": list(sizes), "db": env.db},
        targets=targets,
    )
