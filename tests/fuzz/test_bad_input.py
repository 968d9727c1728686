"""Every route of the schema against each kind of bad input: a clear 4xx in the error shape.

The routes come from the app's own OpenAPI schema, so a new route is swept too (and
a route with a body must get a valid example below, or the sweep says so). Single
cases of each kind live in ``tests/integration/api/test_errors.py`` and
``test_events.py``; here every route gets every kind: oversized bodies, invalid
UTF-8, wrong-type JSON, huge or malformed ``limit`` values, unknown ids, and bogus
``Last-Event-ID`` headers on the streams.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.fakellm import FakeLLM
from tests.helpers import MODELS
from tests.integration.api.conftest import Api, in_process

BODY_LIMIT = 4096  # a small limit keeps the oversized bodies cheap; the middleware is the same
JSON = {"Content-Type": "application/json"}
WRONG_TYPE = [[["not", "this"]]]  # a nested list: no field of any body accepts it


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # template, e.g. /v1/agents/{agent_id}
    spec: dict[str, Any]

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.spec

    def query(self, name: str) -> dict[str, Any] | None:
        for param in self.spec.get("parameters", []):
            if param["in"] == "query" and param["name"] == name:
                return dict(param)
        return None

    def url(self, ids: dict[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], self.path)


@dataclass
class Seeded:
    api: Api
    ids: dict[str, str]
    routes: list[Route]

    def valid_body(self, route: Route) -> dict[str, Any]:
        key = f"{route.method} {route.path}"
        assert key in VALID_BODIES, f"add a valid example body for {key} to VALID_BODIES"
        return VALID_BODIES[key](self.ids)

    async def call(self, route: Route, url: str | None = None, **kwargs: Any) -> httpx.Response:
        url = url or route.url(self.ids)
        return await asyncio.wait_for(self.api.client.request(route.method, url, **kwargs), 10)


VALID_BODIES: dict[str, Any] = {
    "POST /v1/provider-instances": lambda ids: {
        "name": "another",
        "catalog_provider_id": "openai-compatible",
        "base_url": "http://127.0.0.1:9/v1",
    },
    "PATCH /v1/provider-instances/{instance_id}": lambda ids: {"name": "renamed"},
    "POST /v1/provider-instances/{instance_id}/test": lambda ids: {},
    "POST /v1/projects": lambda ids: {"name": "another"},
    "PATCH /v1/projects/{project_id}": lambda ids: {"name": "renamed"},
    "POST /v1/projects/{project_id}/sessions": lambda ids: {"name": "another"},
    "PATCH /v1/sessions/{session_id}": lambda ids: {"name": "renamed"},
    "POST /v1/sessions/{session_id}/agents": lambda ids: {"name": "another"},
    "PATCH /v1/agents/{agent_id}": lambda ids: {"name": "renamed"},
    "POST /v1/agents/{agent_id}/messages": lambda ids: {"content": "hello"},
    "POST /v1/agents/{agent_id}/approvals/{tool_call_id}": lambda ids: {"decision": "deny"},
}


@pytest.fixture
async def seeded(settings: Settings, llm: FakeLLM) -> AsyncIterator[Seeded]:
    async with in_process(settings, max_body_bytes=BODY_LIMIT) as api:
        yield Seeded(api, await _create_ids(api, llm), _routes(api))


async def _create_ids(api: Api, llm: FakeLLM) -> dict[str, str]:
    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await api.client.post(path, json=body)
        assert resp.status_code in (201, 202), resp.text
        return dict(resp.json())

    instance = await post(
        "/v1/provider-instances",
        {"name": "bad input", "catalog_provider_id": "anthropic", "base_url": llm.base_url},
    )
    config = {"provider_instance_id": instance["id"], "model_id": MODELS["anthropic"]}
    project = await post("/v1/projects", {"name": "p", "configuration": config})
    session = await post(f"/v1/projects/{project['id']}/sessions", {"name": "s"})
    agent = session["coordinator_agent_id"]
    turn = (await post(f"/v1/agents/{agent}/messages", {"content": "hi"}))["turn"]
    await api.client.post(f"/v1/turns/{turn['id']}/cancel")  # wait_s then answers at once
    return {
        "instance_id": instance["id"],
        "project_id": project["id"],
        "session_id": session["id"],
        "agent_id": agent,
        "turn_id": turn["id"],
        "tool_call_id": "tc_0000000000000000",
    }


def _routes(api: Api) -> list[Route]:
    schema = api.app.openapi()
    return [
        Route(method.upper(), path, spec)
        for path, operations in schema["paths"].items()
        for method, spec in operations.items()
        if path.startswith("/v1/")
    ]


def _body_model(route: Route) -> str:
    schema = route.spec["requestBody"]["content"]["application/json"]["schema"]
    refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
    return next(ref for ref in refs if ref).rsplit("/", 1)[1]


def assert_clear_4xx(resp: httpx.Response, *statuses: int) -> str:
    """The answer is one of ``statuses`` in the error shape; returns its code."""
    assert resp.status_code in statuses, (resp.status_code, resp.request.url, resp.text[:300])
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] and body["error"]["message"]
    return str(body["error"]["code"])


async def test_every_body_route_answers_413_to_an_oversized_body(seeded: Seeded) -> None:
    huge = b'{"name": "' + b"x" * BODY_LIMIT + b'"}'

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(8):
            yield b" " * (BODY_LIMIT // 4)

    routes = [r for r in seeded.routes if r.has_body]
    assert len(routes) >= 10
    for route in routes:
        declared = await seeded.call(route, content=huge, headers=JSON)
        chunked = await seeded.call(route, content=streamed(), headers=JSON)
        assert assert_clear_4xx(declared, 413) == "payload_too_large"
        assert assert_clear_4xx(chunked, 413) == "payload_too_large"


NOT_AN_OBJECT = [
    b"\xff\xfe\xfd",
    b'{"name": "\xff"}',
    b'{"content": "\xc3\x28"}',
    b"{",
    b"[]",
    b'"a string"',
    b"42",
    b"null",
    b"true",
]


async def test_every_body_route_answers_422_to_invalid_utf8_or_a_non_object(
    seeded: Seeded,
) -> None:
    for route in (r for r in seeded.routes if r.has_body):
        for body in NOT_AN_OBJECT:
            if body == b"null" and not route.spec["requestBody"].get("required"):
                continue  # an optional body may be null
            resp = await seeded.call(route, content=body, headers=JSON)
            assert assert_clear_4xx(resp, 422) == "invalid_request", (route.path, body)


async def test_every_body_field_answers_422_to_a_wrong_type(seeded: Seeded) -> None:
    schemas = seeded.api.app.openapi()["components"]["schemas"]
    checked = 0
    for route in (r for r in seeded.routes if r.has_body):
        valid = seeded.valid_body(route)
        fields = schemas[_body_model(route)].get("properties", {})
        for name in [*fields, "not_a_field"]:
            resp = await seeded.call(route, json=valid | {name: WRONG_TYPE})
            code = assert_clear_4xx(resp, 422)
            assert code == "invalid_request", (route.path, name, resp.text)
            checked += 1
    assert checked >= 30


BAD_LIMITS = ["0", "-1", "{max}1", "{max}000", "1" + "0" * 30, "abc", "1.5", "", "nan", "0x10"]


async def test_every_list_route_answers_422_to_a_bad_limit(seeded: Seeded) -> None:
    routes = [r for r in seeded.routes if r.query("limit")]
    assert len(routes) >= 7
    for route in routes:
        maximum = route.query("limit")["schema"]["maximum"]  # type: ignore[index]
        for limit in BAD_LIMITS:
            value = limit.replace("{max}", str(maximum))
            resp = await seeded.call(route, params={"limit": value})
            assert assert_clear_4xx(resp, 422) == "invalid_request", (route.path, value)


async def test_every_list_route_accepts_its_largest_limit(seeded: Seeded) -> None:
    for route in (r for r in seeded.routes if r.query("limit")):
        maximum = route.query("limit")["schema"]["maximum"]  # type: ignore[index]
        resp = await seeded.call(route, params={"limit": maximum})
        assert resp.status_code == 200, (route.path, resp.text)


async def test_integer_cursors_answer_400_invalid_cursor(seeded: Seeded) -> None:
    int_cursor_routes = [
        r for r in seeded.routes if r.query("cursor") and r.path.endswith(("/turns", "/events"))
    ]
    assert len(int_cursor_routes) == 2
    for route in int_cursor_routes:
        for cursor in ["abc", "-1", "1.5", "9" * 40, "１２"]:
            resp = await seeded.call(route, params={"cursor": cursor})
            code = assert_clear_4xx(resp, 400, 422)
            assert code in ("invalid_cursor", "invalid_request"), (route.path, cursor, code)


UNKNOWN_IDS = ["nope", "x" * 300, "ünïcødé", "..%2F..", " ", "a.b.c", "%00"]


async def test_every_route_with_an_id_answers_404_to_an_unknown_id(seeded: Seeded) -> None:
    routes = [r for r in seeded.routes if "{" in r.path]
    assert len(routes) >= 20
    for route, unknown in ((r, u) for r in routes for u in UNKNOWN_IDS):
        for name in re.findall(r"\{(\w+)\}", route.path):
            url = route.url(seeded.ids | {name: unknown})
            kwargs = {"json": seeded.valid_body(route)} if route.has_body else {}
            headers = {"Last-Event-ID": "0"} if route.path.endswith("/stream") else {}
            resp = await seeded.call(route, url, headers=headers, **kwargs)
            if unknown == "%00" and resp.status_code == 422:  # PostgreSQL refuses NUL: bad input
                continue
            code = assert_clear_4xx(resp, 404)
            assert code.endswith("not_found"), (route.method, url, code)


BOGUS_CURSORS = ["abc", "-1", "1.2.3", "", " ", "1e5", "0x10", "１２", "1;2", "9" * 20, "7" * 5000]


async def test_streams_answer_400_to_a_bogus_last_event_id(seeded: Seeded) -> None:
    routes = [r for r in seeded.routes if r.path.endswith("/events/stream")]
    assert len(routes) == 2
    for route, bogus in ((r, b) for r in routes for b in [*BOGUS_CURSORS, "1.-1"]):
        resp = await seeded.call(route, headers={"Last-Event-ID": bogus.encode()})
        assert assert_clear_4xx(resp, 400) == "invalid_cursor", (route.path, bogus)


async def test_last_event_id_past_the_stream_head_answers_400(seeded: Seeded) -> None:
    """Regression: a cursor the stream never sent was accepted, and the stream then skipped
    every event up to it in silence (the seeded agent's turn was cancelled while queued, so
    its thread has no event yet: head 0)."""
    routes = [r for r in seeded.routes if r.path.endswith("/events/stream")]
    for route, ahead in ((r, a) for r in routes for a in ["1", "500", "500.3"]):
        resp = await seeded.call(route, headers={"Last-Event-ID": ahead})
        assert assert_clear_4xx(resp, 400) == "invalid_cursor", (route.path, ahead)
