"""``bobbin chat AGENT_ID|new "message"``: talk to an agent through the HTTP API.

``new`` opens a session in the project named ``dev`` (made when missing,
configured with the first usable instance of env-anthropic, env-openai,
env-local) and talks to its coordinator agent. The chat is an API client:
it reads no database and no provider variable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from cli.api_client import ApiClient, resolve_api_key
from cli.common import fail, load_settings, one_line_errors
from cli.conversation import converse
from cli.environment import ENV_LOCAL, ENV_PREFERENCE
from shared.providers.catalog import load_catalog

DEV_PROJECT = "dev"


@one_line_errors
def chat(
    agent_id: str = typer.Argument(..., help="An agent id, or `new` for a new dev session."),
    message: str = typer.Argument(..., help="What to say."),
) -> None:
    """Send a message to an agent and stream its answer (approvals are asked here)."""
    settings = load_settings()
    with ApiClient(settings.api_url, resolve_api_key(settings)) as api:
        if agent_id == "new":
            agent_id = new_dev_agent(api)
            typer.echo(f'agent {agent_id} (continue with: bobbin chat {agent_id} "...")')
        raise typer.Exit(converse(api, agent_id, message))


def new_dev_agent(api: ApiClient) -> str:
    """A new session in the ``dev`` project; returns its coordinator agent's id."""
    project = find_project(api, DEV_PROJECT) or create_dev_project(api)
    name = f"chat {datetime.now():%Y-%m-%d %H:%M:%S}"
    session = api.post(f"/v1/projects/{project['id']}/sessions", {"name": name})
    agent_id: str = session["coordinator_agent_id"]
    return agent_id


def find_project(api: ApiClient, name: str) -> dict[str, Any] | None:
    return next((p for p in api.list_all("/v1/projects") if p.get("name") == name), None)


def create_dev_project(api: ApiClient) -> dict[str, Any]:
    instances = {i["id"]: i for i in api.list_all("/v1/provider-instances")}
    for instance_id in ENV_PREFERENCE:
        instance = instances.get(instance_id)
        if instance is None:
            continue
        if instance_id != ENV_LOCAL and not instance.get("has_credential"):
            continue
        configuration = {"provider_instance_id": instance_id, "model_id": _model_for(api, instance)}
        project: dict[str, Any] = api.post(
            "/v1/projects", {"name": DEV_PROJECT, "configuration": configuration}
        )
        return project
    fail(
        "no provider for a new dev project: set ANTHROPIC_API_KEY, OPENAI_API_KEY or "
        "BOBBIN_LOCAL_BASE_URL and run `bobbin providers add --from-env` (or `bobbin dev`)"
    )


def _model_for(api: ApiClient, instance: dict[str, Any]) -> str:
    """The catalog's first model; for a local server, the first model it serves."""
    if instance["id"] == ENV_LOCAL:
        result = api.post(f"/v1/provider-instances/{ENV_LOCAL}/test", {})
        if not result.get("ok") or not result.get("models"):
            error = result.get("error") or {"code": "no_models", "message": "it serves no model"}
            fail(f"{ENV_LOCAL} cannot be used: {error.get('code')}: {error.get('message')}")
        model: str = result["models"][0]
        return model
    catalog = load_catalog().provider(instance["catalog_provider_id"])
    if catalog is None or not catalog.models:
        fail(f"{instance['id']} names a provider the catalog does not know")
    return catalog.models[0].id
