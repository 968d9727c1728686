"""Agents: created and switched only onto instances and models that exist (422 otherwise)."""

from __future__ import annotations

from tests.fakellm import FakeLLM, Reply
from tests.integration.api.conftest import Api
from tests.integration.api.support import (
    create_instance,
    create_session,
    error_code,
    get_turn,
    ok,
    run_turns,
    send,
)

AGENT_FIELDS = {
    "id",
    "session_id",
    "name",
    "provider_instance_id",
    "model_id",
    "status",
    "overrides",
}


async def test_agent_inherits_from_the_session_and_gets_the_next_thread_id(
    api: Api, llm: FakeLLM
) -> None:
    instance_id = await create_instance(api, llm)
    session = await create_session(api, instance_id)

    response = await api.client.post(
        f"/v1/sessions/{session['id']}/agents", json={"name": "helper"}
    )

    agent = ok(response, 201)
    assert set(agent) == AGENT_FIELDS
    assert agent["id"] == f"{session['id']}.2"
    assert agent["provider_instance_id"] == instance_id and agent["model_id"] == "claude-sonnet-4-6"
    assert agent["status"] == "idle" and agent["overrides"] == {}
    assert ok(await api.client.get(f"/v1/agents/{agent['id']}")) == agent


async def test_agent_with_unknown_instance_answers_provider_instance_not_found(
    api: Api, llm: FakeLLM
) -> None:
    session = await create_session(api, await create_instance(api, llm))
    body = {"name": "a", "provider_instance_id": "pi_missing"}

    response = await api.client.post(f"/v1/sessions/{session['id']}/agents", json=body)

    assert error_code(response, 422) == "provider_instance_not_found"


async def test_agent_with_unknown_model_answers_model_not_found(api: Api, llm: FakeLLM) -> None:
    session = await create_session(api, await create_instance(api, llm))
    body = {"name": "a", "model_id": "no-such-model"}

    response = await api.client.post(f"/v1/sessions/{session['id']}/agents", json=body)

    assert error_code(response, 422) == "model_not_found"


async def test_agent_on_instance_without_credential_is_created_and_its_turn_fails_with_code(
    api: Api, llm: FakeLLM
) -> None:
    session = await create_session(api, await create_instance(api, llm))
    bare = await create_instance(api, llm, api_key=None)
    body = {"name": "a", "provider_instance_id": bare}
    agent = ok(await api.client.post(f"/v1/sessions/{session['id']}/agents", json=body), 201)
    assert agent["overrides"] == {"provider_instance_id": bare}

    turn = await send(api, agent["id"], "hello")
    await run_turns(api, agent["id"])

    failed = await get_turn(api, turn["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "provider_credential_missing"
    assert failed["error"]["retryable"] is False


async def test_patch_switches_the_model_and_null_returns_to_the_inherited_one(
    api: Api, llm: FakeLLM
) -> None:
    session = await create_session(api, await create_instance(api, llm))
    agent_path = f"/v1/agents/{session['coordinator_agent_id']}"

    switched = ok(await api.client.patch(agent_path, json={"model_id": "claude-haiku-4-5"}))
    assert switched["model_id"] == "claude-haiku-4-5"
    assert switched["overrides"] == {"model_id": "claude-haiku-4-5"}
    llm.script(Reply(text="from haiku"))
    turn = await send(api, switched["id"], "hi")
    await run_turns(api, switched["id"])
    assert (await get_turn(api, turn["id"]))["model_id"] == "claude-haiku-4-5"
    assert llm.requests[-1].body["model"] == "claude-haiku-4-5"

    restored = ok(await api.client.patch(agent_path, json={"model_id": None, "name": "lead"}))
    assert restored["model_id"] == "claude-sonnet-4-6" and restored["overrides"] == {}
    assert restored["name"] == "lead"


async def test_patch_to_unknown_model_or_instance_answers_422_and_changes_nothing(
    api: Api, llm: FakeLLM
) -> None:
    session = await create_session(api, await create_instance(api, llm))
    agent_path = f"/v1/agents/{session['coordinator_agent_id']}"

    response = await api.client.patch(agent_path, json={"model_id": "nope"})
    assert error_code(response, 422) == "model_not_found"
    response = await api.client.patch(agent_path, json={"provider_instance_id": "nope"})
    assert error_code(response, 422) == "provider_instance_not_found"
    response = await api.client.patch(agent_path, json={"name": None})
    assert error_code(response, 422) == "invalid_request"
    assert ok(await api.client.get(agent_path))["overrides"] == {}


async def test_agents_are_listed_in_spawn_order_by_pages(api: Api, llm: FakeLLM) -> None:
    session = await create_session(api, await create_instance(api, llm))
    for name in ("b", "c"):
        body = {"name": name}
        ok(await api.client.post(f"/v1/sessions/{session['id']}/agents", json=body), 201)
    path = f"/v1/sessions/{session['id']}/agents"

    first = ok(await api.client.get(path, params={"limit": 2}))
    rest = ok(await api.client.get(path, params={"limit": 2, "cursor": first["next_cursor"]}))

    names = [a["name"] for a in first["agents"] + rest["agents"]]
    assert names == ["coordinator", "b", "c"] and rest["next_cursor"] is None


async def test_unknown_agent_and_session_answer_404(api: Api) -> None:
    assert error_code(await api.client.get("/v1/agents/ses_x.1"), 404) == "agent_not_found"
    response = await api.client.post("/v1/sessions/ses_x/agents", json={"name": "a"})
    assert error_code(response, 404) == "session_not_found"
    response = await api.client.get("/v1/sessions/ses_x/agents")
    assert error_code(response, 404) == "session_not_found"
