"""Bad input is a 4xx in the error shape, never a 500; unknown routes are 404s in that shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakellm import FakeLLM
from tests.integration.api.conftest import Api
from tests.integration.api.support import create_agent, error_code, ok

JSON = {"Content-Type": "application/json"}


def message_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": ', "body"),
        (b'{"name": "\xff\xfe"}', "body"),
        (b"[1, 2]", "body"),
        (b'"a string"', "body"),
        (b"{}", "name"),
        (b'{"name": 5}', "name"),
        (b'{"name": ""}', "name"),
        (b'{"name": "' + b"n" * 201 + b'"}', "name"),
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "p", "extra": 1}', "extra"),
        (b'{"name": "p", "configuration": {"model_id": 7}}', "configuration.model_id"),
        (b'{"name": "p", "configuration": {"tool_policies": {"bash": "yes"}}}', "configuration"),
    ],
)
async def test_invalid_body_answers_422_naming_the_field(api: Api, body: bytes, field: str) -> None:
    response = await api.client.post("/v1/projects", content=body, headers=JSON)

    assert error_code(response, 422) == "invalid_request"
    assert message_of(response).startswith(f"{field}"), message_of(response)


async def test_body_without_content_type_answers_422(api: Api) -> None:
    response = await api.client.post("/v1/projects", content=b'{"name": "p"}')
    assert error_code(response, 422) == "invalid_request"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/projects", {"limit": 1001}),
        ("/v1/projects", {"limit": "99999999999999999999999999"}),
        ("/v1/projects", {"limit": 0}),
        ("/v1/projects", {"cursor": "c" * 201}),
        ("/v1/turns/t", {"wait_s": 31}),
        ("/v1/turns/t", {"wait_s": "nan"}),
        ("/v1/turns/t", {"wait_s": "inf"}),
        ("/v1/turns/t", {"wait_s": "soon"}),
    ],
)
async def test_out_of_range_query_answers_422(
    api: Api, path: str, params: dict[str, object]
) -> None:
    response = await api.client.get(path, params=params)
    assert error_code(response, 422) == "invalid_request"


async def test_message_content_limits(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    path = f"/v1/agents/{agent_id}/messages"

    empty = await api.client.post(path, json={"content": ""})
    huge = await api.client.post(path, json={"content": "x" * 1_000_001})
    wrong = await api.client.post(path, json={"content": ["hi"]})
    key = await api.client.post(
        path, json={"content": "hi"}, headers={"Idempotency-Key": "k" * 201}
    )
    accepted = await api.client.post(path, json={"content": "é" * 1_000_000})

    for response in (empty, huge, wrong, key):
        assert error_code(response, 422) == "invalid_request"
    assert message_of(huge).startswith("content:")
    assert message_of(key).startswith("Idempotency-Key:")
    ok(accepted, 202)


async def test_body_over_the_size_limit_answers_413(api: Api) -> None:
    big = b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    declared = await api.client.post("/v1/projects", content=big, headers=JSON)
    streamed = await api.client.post("/v1/projects", content=chunks(), headers=JSON)

    assert error_code(declared, 413) == "payload_too_large"
    assert error_code(streamed, 413) == "payload_too_large"


async def test_unknown_route_and_method_answer_in_the_error_shape(api: Api) -> None:
    assert error_code(await api.client.get("/v1/nothing-here"), 404) == "not_found"
    assert error_code(await api.client.get("/nothing"), 404) == "not_found"
    assert error_code(await api.client.delete("/v1/turns/t"), 405) == "method_not_allowed"


async def test_patch_refuses_null_for_required_fields(api: Api) -> None:
    project_id = ok(await api.client.post("/v1/projects", json={"name": "p"}), 201)["id"]

    response = await api.client.patch(f"/v1/projects/{project_id}", json={"name": None})

    assert error_code(response, 422) == "invalid_request"
    assert message_of(response).startswith("name:")


async def test_unexpected_error_answers_500_without_details(api: Api) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internals")

    api.app.add_api_route("/boom", boom)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, raise_app_exceptions=False),
        base_url="http://bobbin.test",
    ) as client:
        response = await client.get("/boom")

    assert error_code(response, 500) == "internal_error"
    assert "secret" not in response.text


async def test_metrics_are_prometheus_text_named_bobbin(api: Api) -> None:
    ok(await api.client.get("/v1/projects"))

    response = await api.client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    assert 'bobbin_api_requests_total{method="GET",status="200"}' in response.text
    assert "bobbin_api_event_streams 0" in response.text
