"""A real Celery worker process runs kicked turns (real Redis broker, real DB, fake LLM)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.queue import KickSender, make_celery
from shared.resources import Resources
from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.helpers import add_agent, add_instance, send, turn_of, types_of
from tests.processes import WorkerProcess


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(settings, tmp_path / "worker.log").wait_ready()
    yield proc
    proc.stop()


async def wait_status(res: Resources, turn_id: str, statuses: set[str], timeout_s: float = 20):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        turn = await turn_of(res, turn_id)
        if turn.status in statuses:
            return turn
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"turn {turn_id} still {turn.status}")
        await asyncio.sleep(0.05)


async def test_kicked_turn_completes_on_a_worker_process(
    resources: Resources, settings: Settings, llm: FakeLLM, worker: WorkerProcess
) -> None:
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    llm.script(Reply(text="from the worker"))
    turn = await send(resources, agent_id, "hello worker")

    with KickSender(make_celery(settings)) as kicks:
        await kicks.kick(agent_id)

    done = await wait_status(resources, turn.id, {"completed", "failed"})
    assert done.status == "completed", done.error
    assert done.output == "from the worker"
    assert (await types_of(resources, agent_id))[-1] == "turn_completed"
