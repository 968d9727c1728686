"""Steps the API tests share, all through HTTP (running a turn is the worker's part)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.fakellm import FakeLLM
from tests.helpers import MODELS, base_url_for, run
from tests.integration.api.conftest import Api


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


async def create_instance(
    api: Api, llm: FakeLLM, kind: str = "anthropic", *, api_key: str | None = "sk-test-key"
) -> str:
    body: dict[str, Any] = {
        "name": f"fake {kind}",
        "catalog_provider_id": kind,
        "base_url": base_url_for(llm, kind),
        "timeout_s": 5,
    }
    if api_key:
        body["credential"] = {"api_key": api_key}
    return str(ok(await api.client.post("/v1/provider-instances", json=body), 201)["id"])


async def create_session(
    api: Api, instance_id: str, kind: str = "anthropic", **project: Any
) -> dict[str, Any]:
    """A project configured for the instance and a session of it (with its coordinator)."""
    configuration = {"provider_instance_id": instance_id, "model_id": MODELS[kind]}
    body = {"name": "project", "configuration": configuration, **project}
    project_id = ok(await api.client.post("/v1/projects", json=body), 201)["id"]
    created = await api.client.post(f"/v1/projects/{project_id}/sessions", json={"name": "s"})
    return dict(ok(created, 201))


async def create_agent(api: Api, llm: FakeLLM, kind: str = "anthropic", **project: Any) -> str:
    """The coordinator of a fresh session on a fresh instance of the fake LLM."""
    instance_id = await create_instance(api, llm, kind)
    return str((await create_session(api, instance_id, kind, **project))["coordinator_agent_id"])


async def send(api: Api, agent_id: str, content: str, **headers: str) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/agents/{agent_id}/messages", json={"content": content}, headers=headers
    )
    return dict(ok(response, 202)["turn"])


async def run_turns(api: Api, agent_id: str) -> None:
    """What a worker does for one kick, on the app's own resources."""
    await run(api.resources, agent_id)


async def get_turn(api: Api, turn_id: str, **params: Any) -> dict[str, Any]:
    return dict(ok(await api.client.get(f"/v1/turns/{turn_id}", params=params)))


@dataclass
class SseEvent:
    event: str
    id: str
    data: dict[str, Any]


class SseReader:
    """Reads SSE messages off a streamed response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.comments = 0

    async def next(self, timeout_s: float = 5.0) -> SseEvent:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout_s):
            async for line in self._lines:
                if not line:
                    if fields:
                        return SseEvent(fields["event"], fields["id"], json.loads(fields["data"]))
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    async def take(self, count: int, timeout_s: float = 5.0) -> list[SseEvent]:
        return [await self.next(timeout_s) for _ in range(count)]

    async def until(self, event_type: str, timeout_s: float = 5.0) -> list[SseEvent]:
        """Messages up to and including the first of ``event_type``."""
        taken = [await self.next(timeout_s)]
        while taken[-1].event != event_type:
            taken.append(await self.next(timeout_s))
        return taken


def durable(events: list[SseEvent]) -> list[SseEvent]:
    return [e for e in events if "." not in e.id]
