"""POST /v1/agents/{id}/messages verifies its API key inside the enqueue's transaction.

One transaction and one executor hop instead of two (bench/README.md, S8), with the
answers of every other route: the same 401 and message for a missing, wrong or
revoked key, and nothing stored or kicked for a key that is not valid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from api.auth import BAD_KEY, NO_KEY
from shared.apikeys import revoke_key, verify_key
from shared.keys import celery_queue, kick_pending
from shared.settings import Settings
from shared.turns import list_turns
from tests.fakellm import FakeLLM
from tests.integration.api.conftest import Api, in_process
from tests.integration.api.support import create_agent, error_code, send


async def stored_turns(api: Api, agent_id: str) -> list[Any]:
    return await api.resources.db.read(list_turns, agent_id, None, 100)


async def nothing_kicked(api: Api, agent_id: str) -> bool:
    redis: aioredis.Redis = api.resources.redis
    queued = await redis.llen(celery_queue())
    return queued == 0 and not await redis.exists(kick_pending(agent_id))


async def post(
    api: Api, agent_id: str, key: str | None, body: Any, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://bobbin.test"
    ) as client:
        return await client.post(f"/v1/agents/{agent_id}/messages", json=body, headers=headers)


def assert_refused(response: httpx.Response, message: str) -> None:
    assert error_code(response, 401) == "unauthorized"
    assert response.json()["error"]["message"] == message
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_revoked_key_gets_401_and_no_turn_is_stored(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    await api.resources.redis.flushdb()  # forget the set-up's requests
    row = await api.resources.db.read(verify_key, api.key)
    assert row is not None
    await api.resources.db.run(revoke_key, row.id)

    refused = await post(api, agent_id, api.key, {"content": "hello"})
    retried = await post(api, agent_id, api.key, {"content": "hello"}, **{"Idempotency-Key": "k"})
    elsewhere = await api.client.get(f"/v1/agents/{agent_id}/turns")

    assert_refused(refused, BAD_KEY)
    assert_refused(retried, BAD_KEY)
    assert refused.json() == elsewhere.json()  # the same answer as any other route
    assert await stored_turns(api, agent_id) == []
    assert await nothing_kicked(api, agent_id)


@pytest.mark.parametrize(
    "body",
    [{"content": "hello"}, {}, {"content": 3}, {"content": "x", "extra": True}],
    ids=["valid", "empty", "wrong-type", "extra-field"],
)
@pytest.mark.parametrize("kind", ["missing", "wrong", "revoked", "too-long"])
async def test_a_bad_key_gets_the_same_401_whatever_the_body(
    api: Api, llm: FakeLLM, kind: str, body: dict[str, Any]
) -> None:
    """The key is refused before the body is judged, as when a dependency read it first."""
    agent_id = await create_agent(api, llm)
    await api.resources.redis.flushdb()
    if kind == "revoked":
        row = await api.resources.db.read(verify_key, api.key)
        await api.resources.db.run(revoke_key, row.id)  # type: ignore[union-attr]
    key = {"missing": None, "wrong": "bob_not-a-key", "revoked": api.key, "too-long": "k" * 1001}

    response = await post(api, agent_id, key[kind], body)

    assert_refused(response, NO_KEY if kind == "missing" else BAD_KEY)
    assert await stored_turns(api, agent_id) == []
    assert await nothing_kicked(api, agent_id)


async def test_a_bad_key_gets_401_for_an_unknown_agent_and_a_bad_header(api: Api) -> None:
    response = await post(api, "agent_missing", "bob_not-a-key", {"content": "hello"})
    assert_refused(response, BAD_KEY)
    bad_header = {"Idempotency-Key": "x" * 10_000}
    response = await post(api, "agent_missing", "bob_not-a-key", {"content": "hi"}, **bad_header)
    assert_refused(response, BAD_KEY)


async def test_a_good_key_still_gets_422_and_404(api: Api) -> None:
    assert error_code(await post(api, "agent_missing", api.key, {}), 422) == "invalid_request"
    response = await post(api, "agent_missing", api.key, {"content": "hello"})
    assert response.status_code == 404, response.text


def counting(calls: list[str], name: str, fn: Callable[..., Awaitable[Any]]) -> Any:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await fn(*args, **kwargs)

    return counted


async def test_the_post_is_one_transaction(
    api: Api, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = await create_agent(api, llm)
    db = api.resources.db
    calls: list[str] = []
    monkeypatch.setattr(db, "read", counting(calls, "read", db.read))
    monkeypatch.setattr(db, "run", counting(calls, "run", db.run))

    turn = await send(api, agent_id, "hello")

    assert calls == ["run"]  # the key is verified inside the enqueue's transaction
    assert [t.id for t in await stored_turns(api, agent_id)] == [turn["id"]]
    calls.clear()
    assert (await api.client.get(f"/v1/turns/{turn['id']}")).status_code == 200
    assert calls == ["read", "read"]  # other routes: the key's read, then the route's


async def test_an_open_api_takes_messages_without_a_key(settings: Settings, llm: FakeLLM) -> None:
    async with in_process(settings, auth=False) as api:
        agent_id = await create_agent(api, llm)
        response = await post(api, agent_id, None, {"content": "hello"})
        assert response.status_code == 202, response.text
        assert error_code(await post(api, agent_id, None, {}), 422) == "invalid_request"
