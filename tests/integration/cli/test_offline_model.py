"""The offline model end to end: llama.cpp's server, registered as env-local, answers a real
turn run by a real worker process (slow: it loads a 270M model and generates on the CPU)."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import offline
from shared.models import Turn
from shared.queue import KickSender, make_celery
from shared.resources import Resources
from shared.settings import Settings
from tests.helpers import add_agent, send, turn_of, types_of
from tests.processes import WorkerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="the offline model needs llama-cpp-python[server]: pip install -e '.[offline]'",
    ),
]


@pytest.fixture
def offline_model(tmp_path: Path) -> Iterator[offline.OfflineModel]:
    if reason := offline.missing_reason():
        pytest.skip(reason)
    model = offline.OfflineModel(tmp_path / "offline-model.log").start()
    try:
        took = model.wait_ready()
        print(f"offline model ready in {took:.1f} s")
        yield model
    finally:
        model.stop()


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(settings, tmp_path / "worker.log", concurrency=2).wait_ready()
    yield proc
    proc.stop()


async def wait_finished(res: Resources, turn_id: str, timeout_s: float) -> Turn:
    deadline = time.monotonic() + timeout_s
    while (turn := await turn_of(res, turn_id)).status not in {"completed", "failed", "cancelled"}:
        assert time.monotonic() < deadline, f"turn {turn_id} still {turn.status}"
        await asyncio.sleep(0.1)
    return turn


@pytest.mark.timeout(300)
async def test_offline_model_answers_a_real_turn_on_a_worker_process(
    resources: Resources,
    settings: Settings,
    offline_model: offline.OfflineModel,
    worker: WorkerProcess,
) -> None:
    view = offline.register(resources.db, offline_model.base_url)
    assert (view.id, view.base_url) == (offline.INSTANCE_ID, offline_model.base_url)
    config = offline.configuration()
    agent_id = await add_agent(
        resources, config["provider_instance_id"], model_id=config["model_id"]
    )
    turn = await send(resources, agent_id, "Hello! Who are you?")

    started = time.monotonic()
    with KickSender(make_celery(settings)) as kicks:
        await kicks.kick(agent_id)
    done = await wait_finished(resources, turn.id, timeout_s=240)
    print(f"offline turn finished in {time.monotonic() - started:.1f} s")

    assert done.status == "completed", done.error
    assert done.output and done.output.strip()
    assert (await types_of(resources, agent_id))[-1] == "turn_completed"
