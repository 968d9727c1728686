"""The database recovers lost work: a killed worker's turn completes on another worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.queue import KickSender, make_celery
from shared.resources import Resources
from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.helpers import add_agent, add_instance, events_of, send, turn_of
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow


async def test_turn_of_a_killed_worker_completes_on_another(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    settings.lease_s, settings.sweep_interval_s = 2, 1
    doomed = start_worker().wait_ready()
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    llm.script(Reply(text="never finished", latency_s=30))
    llm.script(Reply(text="finished by the survivor"))
    turn = await send(resources, agent_id, "hello")
    with KickSender(make_celery(settings)) as kicks:
        await kicks.kick(agent_id)
    while (await turn_of(resources, turn.id)).status != "running":
        await asyncio.sleep(0.05)

    doomed.kill()
    start_worker().wait_ready()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (done := await turn_of(resources, turn.id)).status != "completed":
        assert loop.time() < deadline, f"turn still {done.status}"
        await asyncio.sleep(0.1)
    assert done.output == "finished by the survivor"
    assert done.attempt == 1
    events = await events_of(resources, agent_id)
    types = [e.type for e in events]
    assert types.count("user_message") == 1 and types.count("turn_started") == 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
