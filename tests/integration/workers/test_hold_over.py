"""A holder keeps the lease from one turn of a backlog to the next (ThreadWriter.hold).

The releasing append renews the lease instead when a turn waits, and the
holder runs it without a new claim; the lease is released once nothing waits
or the worker stops.
"""

from __future__ import annotations

import asyncio

from shared.models import Thread
from shared.resources import Resources
from tests.fakellm import FakeLLM, Reply
from tests.helpers import FAST_RETRY, add_agent, add_instance, send, turn_of
from tests.integration.workers.backlogs import assert_answered_in_order
from workers.runner import WorkerState, run_kick


async def thread_of(res: Resources, agent_id: str) -> Thread:
    thread = await res.db.read(lambda s: s.get(Thread, agent_id))
    assert thread is not None
    return thread


async def test_a_backlog_runs_under_one_lease_released_at_its_end(
    resources: Resources, llm: FakeLLM
) -> None:
    agent_id = await add_agent(resources, await add_instance(resources, llm))
    turn_ids = [(await send(resources, agent_id, f"message {i}")).id for i in range(4)]

    await run_kick(resources, WorkerState(worker_id="w", retry=FAST_RETRY), agent_id)

    await assert_answered_in_order(resources, agent_id, turn_ids)
    thread = await thread_of(resources, agent_id)
    assert thread.lease_token == 1  # taken once for the four turns
    assert thread.lease_holder is None
    assert thread.published_seq == thread.seq


async def test_a_stopping_worker_releases_instead_of_holding_over(
    resources: Resources, llm: FakeLLM
) -> None:
    agent_id = await add_agent(resources, await add_instance(resources, llm))
    llm.script(Reply(text="slow", latency_s=0.5), match="first")
    first = await send(resources, agent_id, "first")
    second = await send(resources, agent_id, "second")
    state = WorkerState(worker_id="w", retry=FAST_RETRY)

    kick = asyncio.create_task(run_kick(resources, state, agent_id))
    while (await turn_of(resources, first.id)).status != "running":
        await asyncio.sleep(0.02)
    state.stopping = True  # as at shutdown: finish this turn, take nothing more
    await kick

    assert (await turn_of(resources, first.id)).status == "completed"
    assert (await turn_of(resources, second.id)).status == "queued"
    thread = await thread_of(resources, agent_id)
    assert thread.lease_holder is None  # the next kick, on any worker, can take it

    await run_kick(resources, WorkerState(worker_id="w2", retry=FAST_RETRY), agent_id)
    await assert_answered_in_order(resources, agent_id, [first.id, second.id])
