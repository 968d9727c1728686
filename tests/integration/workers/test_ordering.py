"""Turns of one agent run one at a time, in arrival order, across worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.queue import KickSender
from shared.resources import Resources
from tests.fakellm import FakeLLM
from tests.helpers import add_agent, add_instance, events_of, send, turn_of
from tests.integration.workers.backlogs import assert_answered_in_order, wait_finished
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow


async def test_concurrent_sends_to_one_agent_are_all_answered_in_order(
    resources: Resources,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    llm.configure(latency_s=0.01)
    workers = [start_worker(), start_worker()]
    for w in workers:
        w.wait_ready()
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)

    async def send_and_kick(i: int) -> str:
        turn = await send(resources, agent_id, f"message {i:03d}")
        await kicks.kick(agent_id)  # as the API does: de-duplicated while one is pending
        return turn.id

    turn_ids = await asyncio.gather(*(send_and_kick(i) for i in range(40)))
    await wait_finished(resources, turn_ids, timeout_s=60)

    turns = [await turn_of(resources, t) for t in turn_ids]
    by_position = sorted(turns, key=lambda t: t.position)
    # all completed; user messages, each turn's events (contiguous, never interleaved)
    # and seqs in arrival order
    await assert_answered_in_order(resources, agent_id, [t.id for t in by_position])
    events = await events_of(resources, agent_id)
    answers = [e.data["content"] for e in events if e.type == "agent_message"]
    assert answers == [f"echo: {t.input}" for t in by_position]
    assert all(t.worker_id for t in turns)
