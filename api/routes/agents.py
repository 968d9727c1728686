"""Agents: threads of a session that each make their own provider at every turn."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import DbDep, PageDep, RegistryDep
from api.providers_check import check_agent_provider
from api.schemas import AgentCreate, AgentList, AgentUpdate
from shared.configuration import apply_patch
from shared.sessions import AgentView, agent_view, list_agents, spawn_agent, update_agent
from shared.threads import get_thread

router = APIRouter(tags=["agents"])


@router.post("/sessions/{session_id}/agents", status_code=201)
async def create(session_id: str, body: AgentCreate, db: DbDep, registry: RegistryDep) -> AgentView:
    """Spawn an agent; omitted values inherit from the session.

    422 ``provider_instance_not_found`` / ``model_not_found`` when the effective
    instance or model does not exist, ``provider_not_configured`` without them.
    """
    overrides = body.model_dump(exclude={"name"}, exclude_none=True)
    await check_agent_provider(db, registry, session_id, overrides)

    def write(session: Session) -> AgentView:
        thread = spawn_agent(session, session_id, body.name, overrides)
        return agent_view(session, thread.id)

    return await db.run(write)


@router.get("/sessions/{session_id}/agents")
async def list_all(session_id: str, db: DbDep, page: PageDep) -> AgentList:
    """The session's agents in spawn order."""
    rows = await db.read(list_agents, session_id, page.int_cursor() or 0, page.fetch)
    rows, next_cursor = page.cut(rows, lambda row: row.id.rsplit(".", 1)[1])
    return AgentList(agents=rows, next_cursor=next_cursor)


@router.get("/agents/{agent_id}")
async def get(agent_id: str, db: DbDep) -> AgentView:
    """``provider_instance_id`` and ``model_id`` are effective; ``overrides`` the agent's own."""
    return await db.read(agent_view, agent_id)


@router.patch("/agents/{agent_id}")
async def update(agent_id: str, body: AgentUpdate, db: DbDep, registry: RegistryDep) -> AgentView:
    """Switch provider or model (from the next turn on) or rename; null drops an override."""
    patch: dict[str, Any] = body.model_dump(exclude_unset=True)
    thread = await db.read(get_thread, agent_id)
    await check_agent_provider(db, registry, thread.session_id, apply_patch(thread.meta, patch))

    def write(session: Session) -> AgentView:
        update_agent(session, agent_id, patch)
        return agent_view(session, agent_id)

    return await db.run(write)
