"""Messages become durable queued turns; turns are read, long-polled, listed and cancelled."""

from __future__ import annotations

import asyncio

from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.integration.api.conftest import Api, in_process
from tests.integration.api.support import (
    create_agent,
    error_code,
    get_turn,
    ok,
    run_turns,
    send,
)

TURN_FIELDS = {
    "id",
    "agent_id",
    "session_id",
    "status",
    "input",
    "output",
    "attempt",
    "position",
    "provider_instance_id",
    "model_id",
    "created_at",
    "started_at",
    "finished_at",
}


async def test_message_is_queued_as_a_turn_that_a_worker_completes(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    llm.script(Reply(text="Hello there", input_tokens=12, output_tokens=3), match="hi")

    queued = await send(api, agent_id, "hi")

    assert set(queued) == TURN_FIELDS  # no error and no usage yet: absent, not null
    assert queued["status"] == "queued" and queued["agent_id"] == agent_id
    assert queued["input"] == "hi" and queued["output"] is None
    await run_turns(api, agent_id)
    done = await get_turn(api, queued["id"])
    assert done["status"] == "completed" and done["output"] == "Hello there"
    # claude-sonnet-4-6 at $3 / $15 per Mtok: 12 x 3 + 3 x 15 = 81 micro-dollars
    assert done["usage"] == {
        "input_tokens": 12,
        "output_tokens": 3,
        "cost_usd": "0.000081",
        "estimated": False,
    }
    assert "error" not in done
    assert done["started_at"].endswith("Z") and done["finished_at"] >= done["started_at"]


async def test_wait_s_answers_as_soon_as_the_turn_finishes(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    turn = await send(api, agent_id, "hi")

    waiting = asyncio.create_task(get_turn(api, turn["id"], wait_s=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await run_turns(api, agent_id)
    done = await asyncio.wait_for(waiting, 2)

    assert done["status"] == "completed"


async def test_wait_s_returns_the_queued_turn_after_the_wait(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    turn = await send(api, agent_id, "hi")

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await get_turn(api, turn["id"], wait_s=0.3))["status"] == "queued"
    assert 0.3 <= loop.time() - started < 2


async def test_same_idempotency_key_and_body_answer_the_same_turn(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)

    first = await send(api, agent_id, "hi", **{"Idempotency-Key": "k-1"})
    again = await send(api, agent_id, "hi", **{"Idempotency-Key": "k-1"})
    other = await send(api, agent_id, "hi", **{"Idempotency-Key": "k-2"})

    assert again["id"] == first["id"] != other["id"]
    turns = ok(await api.client.get(f"/v1/agents/{agent_id}/turns"))["turns"]
    assert len(turns) == 2


async def test_idempotency_key_with_another_body_answers_409(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    await send(api, agent_id, "hi", **{"Idempotency-Key": "k-1"})

    response = await api.client.post(
        f"/v1/agents/{agent_id}/messages",
        json={"content": "something else"},
        headers={"Idempotency-Key": "k-1"},
    )

    assert error_code(response, 409) == "idempotency_key_reused"


async def test_agent_with_max_queued_turns_answers_429(settings: Settings, llm: FakeLLM) -> None:
    async with in_process(settings.model_copy(update={"max_queued_turns": 2})) as api:
        agent_id = await create_agent(api, llm)
        await send(api, agent_id, "one")
        await send(api, agent_id, "two")

        response = await api.client.post(
            f"/v1/agents/{agent_id}/messages", json={"content": "three"}
        )

        assert error_code(response, 429) == "agent_queue_full"


async def test_message_to_unknown_agent_answers_404(api: Api) -> None:
    response = await api.client.post("/v1/agents/ses_x.1/messages", json={"content": "hi"})
    assert error_code(response, 404) == "agent_not_found"
    assert error_code(await api.client.get("/v1/turns/turn_x"), 404) == "turn_not_found"


async def test_turns_are_listed_newest_first_by_pages(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    sent = [(await send(api, agent_id, f"m{n}"))["id"] for n in range(3)]
    path = f"/v1/agents/{agent_id}/turns"

    first = ok(await api.client.get(path, params={"limit": 2}))
    rest = ok(await api.client.get(path, params={"limit": 2, "cursor": first["next_cursor"]}))

    assert [t["id"] for t in first["turns"] + rest["turns"]] == sent[::-1]
    assert rest["next_cursor"] is None
    bad = await api.client.get(path, params={"cursor": "not-a-number"})
    assert error_code(bad, 400) == "invalid_cursor"


async def test_queued_turn_is_cancelled_at_once(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    turn = await send(api, agent_id, "hi")

    response = await api.client.post(f"/v1/turns/{turn['id']}/cancel")

    assert ok(response, 202)["turn"]["status"] == "cancelled"
    cancelled = await get_turn(api, turn["id"])
    assert cancelled["status"] == "cancelled" and "error" not in cancelled
    again = await api.client.post(f"/v1/turns/{turn['id']}/cancel")
    assert error_code(again, 409) == "turn_not_cancellable"


async def test_finished_turn_is_not_cancellable(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    turn = await send(api, agent_id, "hi")
    await run_turns(api, agent_id)

    response = await api.client.post(f"/v1/turns/{turn['id']}/cancel")

    assert error_code(response, 409) == "turn_not_cancellable"
    assert error_code(await api.client.post("/v1/turns/turn_x/cancel"), 404) == "turn_not_found"


async def test_message_is_accepted_while_redis_is_down(settings: Settings, llm: FakeLLM) -> None:
    no_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with in_process(no_redis) as api:
        agent_id = await create_agent(api, llm)
        loop = asyncio.get_running_loop()
        started = loop.time()

        turn = await send(api, agent_id, "hi")

        assert loop.time() - started < 3
        assert (await get_turn(api, turn["id"]))["status"] == "queued"
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503 and "retry-after" in ready.headers
        assert ready.json()["checks"] == {"database": "ok", "redis": "unavailable"}
        stream = await api.client.get(f"/v1/agents/{agent_id}/events/stream")
        assert error_code(stream, 503) == "service_unavailable"
