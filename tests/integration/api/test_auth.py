"""Every /v1 route needs an active API key; keys are stored hashed and revoke at once."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from shared.apikeys import count_active, create_key, list_keys, revoke_key, verify_key
from shared.crypto import hash_api_key
from shared.models import ApiKey
from shared.settings import Settings
from tests.integration.api.conftest import Api, in_process
from tests.integration.api.support import error_code, ok

OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/"]


def v1_routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, path) the API documents under /v1, path parameters filled in."""
    paths = api.app.openapi()["paths"]
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    ]
    assert len(routes) >= 29, routes
    return routes


async def assert_every_route_refuses(api: Api, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://bobbin.test", headers=headers
    ) as client:
        for method, path in v1_routes(api):
            response = await client.request(method, path, json={})
            assert error_code(response, 401) == "unauthorized", (method, path)
            assert response.headers["www-authenticate"] == "Bearer"


async def test_every_v1_route_answers_401_without_a_key(api: Api) -> None:
    await assert_every_route_refuses(api, {})


@pytest.mark.parametrize(
    "authorization", ["Bearer bob_not-a-key", "Basic dXNlcjpwYXNz", "Bearer", "bob_raw-key"]
)
async def test_every_v1_route_answers_401_with_a_wrong_key(api: Api, authorization: str) -> None:
    await assert_every_route_refuses(api, {"Authorization": authorization})


async def test_revoked_key_stops_working_at_once(api: Api) -> None:
    ok(await api.client.get("/v1/projects"))
    row = await api.resources.db.read(verify_key, api.key)
    assert row is not None

    await api.resources.db.run(revoke_key, row.id)

    assert error_code(await api.client.get("/v1/projects"), 401) == "unauthorized"
    await assert_every_route_refuses(api, {"Authorization": f"Bearer {api.key}"})


async def test_open_routes_answer_without_a_key(api: Api) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://bobbin.test"
    ) as client:
        for path in OPEN_PATHS:
            assert (await client.get(path)).status_code == 200, path
        assert "Bobbin console" in (await client.get("/")).text


async def test_keys_are_stored_hashed_and_verified_by_hash(api: Api) -> None:
    db = api.resources.db
    row, plaintext = await db.run(create_key, "ci")

    stored = await db.read(lambda s: s.exec(select(ApiKey).where(ApiKey.id == row.id)).one())
    assert stored.key_hash == hash_api_key(plaintext) != plaintext
    assert plaintext not in stored.prefix and len(stored.prefix) <= 8
    assert (await db.read(verify_key, plaintext)).id == row.id  # type: ignore[union-attr]
    assert await db.read(verify_key, plaintext + "x") is None
    assert await db.read(count_active) == 2  # the test's key and this one
    await db.run(revoke_key, row.id)
    assert await db.read(verify_key, plaintext) is None
    assert await db.read(count_active) == 1
    assert [k.name for k in await db.read(list_keys)] == ["test", "ci"]


async def test_bootstrap_key_is_stored_hashed_at_startup_once(settings: Settings) -> None:
    bootstrap = "bootstrap-key-for-compose-0123456789"
    configured = settings.model_copy(update={"bootstrap_api_key": SecretStr(bootstrap)})
    for _ in range(2):  # a restart finds the key and stores nothing new
        async with in_process(configured) as api:
            response = await api.client.get(
                "/v1/projects", headers={"Authorization": f"Bearer {bootstrap}"}
            )
            ok(response)
            keys = await api.resources.db.read(list_keys)
    assert [k.name for k in keys].count("bootstrap") == 1
    assert all(bootstrap not in (k.key_hash, k.prefix) for k in keys)


async def test_app_without_auth_runs_open(settings: Settings) -> None:
    async with in_process(settings, auth=False) as api:
        ok(await api.client.get("/v1/projects", headers={"Authorization": ""}))
