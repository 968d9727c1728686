"""A provider's 60 s Retry-After, honoured by the whole cluster without a worker slot held:
real API and worker processes, on SQLite and on PostgreSQL (slow: once per database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ON_BOTH_DATABASES
from tests.e2e.flows import create_instance, create_session, send, wait_turn
from tests.fakellm import FakeLLM, Reply
from tests.processes import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@ON_BOTH_DATABASES
async def test_a_60_s_retry_after_is_honoured_by_every_worker_without_a_slot_held(
    client: httpx.AsyncClient, llm: FakeLLM, start_worker: Callable[..., WorkerProcess]
) -> None:
    # One slot per worker: a waiting turn that kept its slot would stop all else.
    for worker in [start_worker(concurrency=1), start_worker(concurrency=1)]:
        worker.wait_ready()
    cooled = await create_session(client, await create_instance(client, llm))
    healthy = await create_session(client, await create_instance(client, llm, "openai"), "openai")
    second = await client.post(f"/v1/sessions/{cooled['id']}/agents", json={"name": "second"})
    llm.script(Reply(error_status=429, error_headers={"retry-after": "60"}), match="first")

    asked = time.time()
    first = await send(client, cooled["coordinator_agent_id"], "first message")
    parked = await _until(client, first["id"], lambda t: "waiting" in t)
    later = await send(client, second.json()["id"], "a later message")
    also_parked = await _until(client, later["id"], lambda t: "waiting" in t)
    requests_while_cooling = len(llm.requests)
    meanwhile = [
        await wait_turn(
            client, (await send(client, healthy["coordinator_agent_id"], f"h{i}"))["id"]
        )
        for i in range(5)
    ]
    agent = (await client.get(f"/v1/agents/{cooled['coordinator_agent_id']}")).json()
    done = await wait_turn(client, first["id"], timeout_s=120)
    after_s = time.time() - asked

    print(f"figure: 60 s Retry-After: completed after {after_s:.1f} s; 5 other turns meanwhile")
    for waiting in (parked, also_parked):
        assert waiting["status"] == "queued"
        assert waiting["waiting"]["reason"] == "provider_cooldown"
    assert requests_while_cooling == 1  # the later turn never called the cooling provider
    assert agent["status"] == "running"
    assert [t["status"] for t in meanwhile] == ["completed"] * 5
    assert done["status"] == "completed" and "waiting" not in done
    assert after_s >= 60
    assert (await wait_turn(client, later["id"], timeout_s=30))["status"] == "completed"


async def _until(
    client: httpx.AsyncClient, turn_id: str, predicate: Callable[[dict], bool]
) -> dict:
    for _ in range(200):
        turn = (await client.get(f"/v1/turns/{turn_id}")).json()
        if predicate(turn):
            return dict(turn)
        await asyncio.sleep(0.05)
    raise AssertionError(f"turn {turn_id}: {turn}")
