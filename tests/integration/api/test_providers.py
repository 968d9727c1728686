"""The catalog, provider instances and their test call; credentials never come back out."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from shared.models import Credential
from tests.fakellm import FakeLLM
from tests.helpers import base_url_for
from tests.integration.api.conftest import Api
from tests.integration.api.support import (
    create_agent,
    create_instance,
    error_code,
    ok,
    run_turns,
    send,
)

CANARY = "sk-canary-7f3a9c1e5b2d4f60a8e1c3b5d7f9e2a4"


async def test_catalog_lists_provider_kinds_with_their_models(api: Api) -> None:
    catalog = ok(await api.client.get("/v1/providers/catalog"))

    assert catalog["next_cursor"] is None
    types = {p["type"] for p in catalog["providers"]}
    assert {"anthropic", "openai", "openai-compatible"} <= types
    provider = catalog["providers"][0]
    assert set(provider) == {"id", "name", "type", "default_base_url", "models"}
    assert set(provider["models"][0]) == {
        "id",
        "name",
        "context_window",
        "max_output_tokens",
        "supports_tools",
        "cost_per_mtok_in",
        "cost_per_mtok_out",
        "reasoning",
    }


async def test_instance_is_created_read_listed_updated_and_deleted(api: Api) -> None:
    body = {
        "id": "my-anthropic",
        "name": "Anthropic",
        "catalog_provider_id": "anthropic",
        "credential": {"api_key": "sk-one"},
    }
    created = ok(await api.client.post("/v1/provider-instances", json=body), 201)
    assert created == {
        "id": "my-anthropic",
        "name": "Anthropic",
        "catalog_provider_id": "anthropic",
        "base_url": None,
        "timeout_s": 60.0,
        "has_credential": True,
        "models": [],
        "limits": {},
        "cooldowns": [],
    }
    assert ok(await api.client.get("/v1/provider-instances/my-anthropic")) == created

    patch = {"name": "renamed", "timeout_s": 5, "base_url": "http://127.0.0.1:9/"}
    updated = ok(await api.client.patch("/v1/provider-instances/my-anthropic", json=patch))
    assert (updated["name"], updated["timeout_s"], updated["base_url"]) == (
        "renamed",
        5.0,
        "http://127.0.0.1:9/",
    )
    listed = ok(await api.client.get("/v1/provider-instances"))
    assert listed == {"provider_instances": [updated], "next_cursor": None}

    response = await api.client.delete("/v1/provider-instances/my-anthropic")
    assert response.status_code == 204
    missing = await api.client.get("/v1/provider-instances/my-anthropic")
    assert error_code(missing, 404) == "provider_instance_not_found"


async def test_instances_page_by_cursor(api: Api) -> None:
    for n in range(3):
        body = {"id": f"inst-{n}", "name": "x", "catalog_provider_id": "openai-compatible"}
        ok(await api.client.post("/v1/provider-instances", json=body), 201)

    first = ok(await api.client.get("/v1/provider-instances", params={"limit": 2}))
    rest = ok(
        await api.client.get(
            "/v1/provider-instances", params={"limit": 2, "cursor": first["next_cursor"]}
        )
    )

    ids = [i["id"] for i in first["provider_instances"] + rest["provider_instances"]]
    assert ids == ["inst-0", "inst-1", "inst-2"]
    assert first["next_cursor"] == "inst-1" and rest["next_cursor"] is None


async def test_instance_with_existing_id_answers_409(api: Api) -> None:
    body = {"id": "dup", "name": "x", "catalog_provider_id": "openai"}
    ok(await api.client.post("/v1/provider-instances", json=body), 201)
    response = await api.client.post("/v1/provider-instances", json=body)
    assert error_code(response, 409) == "already_exists"


async def test_instance_of_unknown_catalog_provider_answers_422(api: Api) -> None:
    body = {"name": "x", "catalog_provider_id": "no-such-provider"}
    response = await api.client.post("/v1/provider-instances", json=body)
    assert error_code(response, 422) == "invalid_request"


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_instance_test_calls_the_endpoint_and_lists_its_models(
    api: Api, llm: FakeLLM, kind: str
) -> None:
    instance_id = await create_instance(api, llm, kind)

    result = ok(await api.client.post(f"/v1/provider-instances/{instance_id}/test"))

    assert result == {"ok": True, "models": ["fake-large", "fake-small"]}


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_instance_test_reports_a_rejected_key_without_leaking_it(
    api: Api, llm: FakeLLM, kind: str
) -> None:
    llm.configure(api_keys=["the-right-key"])
    instance_id = await create_instance(api, llm, kind, api_key=CANARY)

    response = await api.client.post(f"/v1/provider-instances/{instance_id}/test")

    result = ok(response)
    assert result["ok"] is False and set(result) == {"ok", "error"}
    assert result["error"]["code"] == "provider_auth_failed"
    assert CANARY not in response.text


async def test_instance_test_of_unreachable_endpoint_reports_provider_unreachable(
    api: Api,
) -> None:
    body = {
        "name": "nowhere",
        "catalog_provider_id": "openai-compatible",
        "base_url": "http://127.0.0.1:9/v1",
        "timeout_s": 2,
    }
    instance_id = ok(await api.client.post("/v1/provider-instances", json=body), 201)["id"]

    result = ok(await api.client.post(f"/v1/provider-instances/{instance_id}/test"))

    assert result["ok"] is False and result["error"]["code"] == "provider_unreachable"


async def test_instance_test_without_credential_reports_credential_missing(
    api: Api, llm: FakeLLM
) -> None:
    instance_id = await create_instance(api, llm, "anthropic", api_key=None)
    result = ok(await api.client.post(f"/v1/provider-instances/{instance_id}/test"))
    assert result["ok"] is False
    assert result["error"]["code"] == "provider_credential_missing"


async def test_test_of_unknown_instance_answers_404(api: Api) -> None:
    response = await api.client.post("/v1/provider-instances/nope/test")
    assert error_code(response, 404) == "provider_instance_not_found"


async def test_credential_never_appears_in_any_response(api: Api, llm: FakeLLM) -> None:
    body = {
        "name": "canary",
        "catalog_provider_id": "openai",
        "base_url": base_url_for(llm, "openai"),
        "credential": {"api_key": CANARY},
    }
    texts = []
    created = await api.client.post("/v1/provider-instances", json=body)
    instance_id = ok(created, 201)["id"]
    texts.append(created.text)
    patch = {"credential": {"api_key": CANARY}, "name": "canary 2"}
    for response in [
        await api.client.get(f"/v1/provider-instances/{instance_id}"),
        await api.client.get("/v1/provider-instances"),
        await api.client.patch(f"/v1/provider-instances/{instance_id}", json=patch),
        await api.client.post(f"/v1/provider-instances/{instance_id}/test"),
        await api.client.post("/v1/provider-instances", json={**body, "id": instance_id}),
        await api.client.post("/v1/provider-instances", json={**body, "timeout_s": -1}),
    ]:
        texts.append(response.text)
    agent_id = await create_agent(api, llm, "openai")
    ok(await api.client.patch(f"/v1/agents/{agent_id}", json={"provider_instance_id": instance_id}))
    await send(api, agent_id, "hello")
    await run_turns(api, agent_id)
    for path in [f"/v1/agents/{agent_id}", f"/v1/agents/{agent_id}/turns"]:
        texts.append((await api.client.get(path)).text)
    texts.append((await api.client.get(f"/v1/agents/{agent_id}/events")).text)

    assert all(CANARY not in text for text in texts)
    stored = await api.resources.db.read(lambda s: list(s.exec(select(Credential))))
    assert stored and all(CANARY not in row.ciphertext for row in stored)
    assert json.loads(texts[0])["has_credential"] is True
