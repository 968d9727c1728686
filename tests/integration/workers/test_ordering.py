"""Turns of one agent run one at a time, in arrival order, across worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.config import Settings
from shared.queue import KickSender, make_celery
from shared.resources import Resources
from tests.fakellm import FakeLLM
from tests.helpers import add_agent, add_instance, events_of, send, turn_of
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow


async def wait_all_done(res: Resources, turn_ids: list[str], timeout_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for turn_id in turn_ids:
        while (await turn_of(res, turn_id)).status not in ("completed", "failed", "cancelled"):
            if loop.time() > deadline:
                raise TimeoutError(f"turn {turn_id} did not finish")
            await asyncio.sleep(0.05)


async def test_concurrent_sends_to_one_agent_are_all_answered_in_order(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    llm.configure(latency_s=0.01)
    workers = [start_worker(), start_worker()]
    for w in workers:
        w.wait_ready()
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    kicks = KickSender(make_celery(settings))

    async def send_and_kick(i: int) -> str:
        turn = await send(resources, agent_id, f"message {i:03d}")
        await kicks.kick(agent_id)  # as the API does: de-duplicated while one is pending
        return turn.id

    try:
        turn_ids = await asyncio.gather(*(send_and_kick(i) for i in range(40)))
        await wait_all_done(resources, turn_ids)
    finally:
        kicks.close()

    turns = [await turn_of(resources, t) for t in turn_ids]
    assert [t.status for t in turns] == ["completed"] * 40
    events = await events_of(resources, agent_id)
    by_position = sorted(turns, key=lambda t: t.position)
    users = [e.data["content"] for e in events if e.type == "user_message"]
    assert users == [t.input for t in by_position]
    answers = [e.data["content"] for e in events if e.type == "agent_message"]
    assert answers == [f"echo: {t.input}" for t in by_position]
    # each turn's events are contiguous: started, answered, completed, never interleaved
    turn_sequence = [e.turn_id for e in events if e.turn_id]
    collapsed = [t for i, t in enumerate(turn_sequence) if i == 0 or turn_sequence[i - 1] != t]
    assert collapsed == [t.id for t in by_position]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(t.worker_id for t in turns)
