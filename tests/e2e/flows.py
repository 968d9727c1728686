"""Steps the end-to-end tests take through the public HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fakellm import FakeLLM
from tests.helpers import MODELS, base_url_for


async def create_instance(client: httpx.AsyncClient, llm: FakeLLM, kind: str = "anthropic") -> str:
    resp = await client.post(
        "/v1/provider-instances",
        json={
            "name": f"fake {kind}",
            "catalog_provider_id": kind,
            "base_url": base_url_for(llm, kind),
            "timeout_s": 10,
            "credential": {"api_key": "sk-e2e-test"},
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def create_session(
    client: httpx.AsyncClient,
    instance_id: str,
    kind: str = "anthropic",
    policies: dict[str, str] | None = None,
    working_directory: str | None = None,
) -> dict[str, Any]:
    configuration: dict[str, Any] = {"provider_instance_id": instance_id, "model_id": MODELS[kind]}
    if policies:
        configuration["tool_policies"] = policies
    body: dict[str, Any] = {"name": "e2e", "configuration": configuration}
    if working_directory:
        body["working_directory"] = working_directory
    project = await client.post("/v1/projects", json=body)
    assert project.status_code == 201, project.text
    session = await client.post(
        f"/v1/projects/{project.json()['id']}/sessions", json={"name": "e2e session"}
    )
    assert session.status_code == 201, session.text
    return dict(session.json())


async def send(client: httpx.AsyncClient, agent_id: str, content: str) -> dict[str, Any]:
    resp = await client.post(f"/v1/agents/{agent_id}/messages", json={"content": content})
    assert resp.status_code == 202, resp.text
    return dict(resp.json()["turn"])


async def wait_turn(
    client: httpx.AsyncClient, turn_id: str, timeout_s: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        resp = await client.get(f"/v1/turns/{turn_id}", params={"wait_s": 5})
        assert resp.status_code == 200, resp.text
        turn = dict(resp.json())
        if turn["status"] not in ("queued", "running"):
            return turn
        assert asyncio.get_running_loop().time() < deadline, f"turn still {turn['status']}"
