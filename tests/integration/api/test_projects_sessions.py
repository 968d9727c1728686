"""Projects and sessions: configuration inherits, sessions come with their coordinator."""

from __future__ import annotations

from tests.fakellm import FakeLLM
from tests.helpers import MODELS
from tests.integration.api.conftest import Api
from tests.integration.api.support import create_instance, create_session, error_code, ok


async def test_project_is_created_read_listed_updated_and_deleted(api: Api) -> None:
    body = {
        "name": "docs",
        "working_directory": "/srv/docs",
        "configuration": {"model_id": "m", "tool_policies": {"bash": "deny"}},
    }
    created = ok(await api.client.post("/v1/projects", json=body), 201)
    project_id = created["id"]
    assert created["name"] == "docs" and created["working_directory"] == "/srv/docs"
    assert created["configuration"] == {"model_id": "m", "tool_policies": {"bash": "deny"}}
    assert created["created_at"].endswith("Z")
    assert ok(await api.client.get(f"/v1/projects/{project_id}")) == created
    assert ok(await api.client.get("/v1/projects"))["projects"] == [created]

    patch = {"name": "docs 2", "configuration": {"model_id": None, "system_prompt": "Be brief."}}
    updated = ok(await api.client.patch(f"/v1/projects/{project_id}", json=patch))
    assert updated["name"] == "docs 2"
    assert updated["configuration"] == {
        "tool_policies": {"bash": "deny"},
        "system_prompt": "Be brief.",
    }

    assert (await api.client.delete(f"/v1/projects/{project_id}")).status_code == 204
    assert error_code(await api.client.get(f"/v1/projects/{project_id}"), 404) == (
        "project_not_found"
    )


async def test_project_with_sessions_cannot_be_deleted(api: Api, llm: FakeLLM) -> None:
    instance_id = await create_instance(api, llm)
    session = await create_session(api, instance_id)

    response = await api.client.delete(f"/v1/projects/{session['project_id']}")

    assert error_code(response, 409) == "conflict"


async def test_session_spawns_its_coordinator_and_shows_approved_tools(
    api: Api, llm: FakeLLM
) -> None:
    instance_id = await create_instance(api, llm)
    session = await create_session(api, instance_id)

    assert session["coordinator_agent_id"] == f"{session['id']}.1"
    assert session["approved_tools"] == [] and session["configuration"] == {}
    assert ok(await api.client.get(f"/v1/sessions/{session['id']}")) == session
    coordinator = ok(await api.client.get(f"/v1/agents/{session['coordinator_agent_id']}"))
    assert coordinator["provider_instance_id"] == instance_id
    assert coordinator["model_id"] == MODELS["anthropic"]
    listed = ok(await api.client.get(f"/v1/projects/{session['project_id']}/sessions"))
    assert listed == {"sessions": [session], "next_cursor": None}


async def test_session_without_instance_or_model_answers_provider_not_configured(
    api: Api,
) -> None:
    project_id = ok(await api.client.post("/v1/projects", json={"name": "bare"}), 201)["id"]

    response = await api.client.post(f"/v1/projects/{project_id}/sessions", json={"name": "s"})

    assert error_code(response, 422) == "provider_not_configured"


async def test_session_configuration_overrides_the_project_and_null_removes_it(
    api: Api, llm: FakeLLM
) -> None:
    instance_id = await create_instance(api, llm)
    session = await create_session(api, instance_id)
    agent_path = f"/v1/agents/{session['coordinator_agent_id']}"

    patched = await api.client.patch(
        f"/v1/sessions/{session['id']}",
        json={"name": "renamed", "configuration": {"model_id": "claude-haiku-4-5"}},
    )
    assert ok(patched)["configuration"] == {"model_id": "claude-haiku-4-5"}
    assert ok(await api.client.get(agent_path))["model_id"] == "claude-haiku-4-5"

    patched = await api.client.patch(
        f"/v1/sessions/{session['id']}", json={"configuration": {"model_id": None}}
    )
    assert ok(patched)["configuration"] == {} and ok(patched)["name"] == "renamed"
    assert ok(await api.client.get(agent_path))["model_id"] == MODELS["anthropic"]


async def test_session_of_unknown_project_answers_404(api: Api) -> None:
    response = await api.client.post("/v1/projects/prj_nope/sessions", json={"name": "s"})
    assert error_code(response, 404) == "project_not_found"
    response = await api.client.get("/v1/projects/prj_nope/sessions")
    assert error_code(response, 404) == "project_not_found"


async def test_session_with_unknown_instance_answers_provider_instance_not_found(
    api: Api,
) -> None:
    configuration = {"provider_instance_id": "nope", "model_id": "m"}
    body = {"name": "p", "configuration": configuration}
    project_id = ok(await api.client.post("/v1/projects", json=body), 201)["id"]

    response = await api.client.post(f"/v1/projects/{project_id}/sessions", json={"name": "s"})

    assert error_code(response, 422) == "provider_instance_not_found"


async def test_projects_page_by_cursor(api: Api) -> None:
    ids = [
        ok(await api.client.post("/v1/projects", json={"name": f"p{n}"}), 201)["id"]
        for n in range(3)
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = ok(await api.client.get("/v1/projects", params=params))
        seen += [p["id"] for p in page["projects"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)
