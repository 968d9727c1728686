"""Agents: threads of a session that each make their own provider at every turn."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import AgentsDep, PageDep
from api.schemas import AgentCreate, AgentList, AgentUpdate
from shared.agents.records import AgentView

router = APIRouter(tags=["agents"])


@router.post("/sessions/{session_id}/agents", status_code=201, summary="Create an agent")
async def create(session_id: str, body: AgentCreate, agents: AgentsDep) -> AgentView:
    """Spawn an agent in the session (its id is ``<session_id>.<n>``); omitted values
    inherit from the session.

    422 ``provider_instance_not_found`` / ``model_not_found`` when the effective
    instance or model does not exist, ``provider_not_configured`` without them;
    404 ``session_not_found`` for an unknown session.
    """
    return await agents.create(
        session_id, body.name, body.model_dump(exclude={"name"}, exclude_none=True)
    )


@router.get("/sessions/{session_id}/agents", summary="List a session's agents")
async def list_all(session_id: str, agents: AgentsDep, page: PageDep) -> AgentList:
    """The session's agents in spawn order, its coordinator ``<session_id>.1`` first.

    404 ``session_not_found`` for an unknown session.
    """
    rows = await agents.list(session_id, page.int_cursor() or 0, page.fetch)
    rows, next_cursor = page.cut(rows, lambda row: row.id.rsplit(".", 1)[1])
    return AgentList(agents=rows, next_cursor=next_cursor)


@router.get("/agents/{agent_id}", summary="Get an agent")
async def get(agent_id: str, agents: AgentsDep) -> AgentView:
    """An agent and its ``status``: ``idle``, ``running`` or ``awaiting_approval``.

    ``provider_instance_id`` and ``model_id`` are effective; ``overrides`` the agent's own.
    404 ``agent_not_found`` for an unknown id.
    """
    return await agents.view(agent_id)


@router.patch("/agents/{agent_id}", summary="Update an agent")
async def update(agent_id: str, body: AgentUpdate, agents: AgentsDep) -> AgentView:
    """Switch provider or model (from the next turn on) or rename; null drops an override.

    422 ``provider_instance_not_found`` / ``model_not_found`` as on creation;
    404 ``agent_not_found`` for an unknown id.
    """
    patch: dict[str, Any] = body.model_dump(exclude_unset=True)
    return await agents.update(agent_id, patch)
