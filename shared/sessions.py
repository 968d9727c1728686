"""Projects, sessions and agents: store functions, one transaction each.

An agent is its thread: ``spawn_agent`` writes the thread row and its
metadata (name and the agent's own overrides) and nothing else. No provider
is made or cached here: the agent makes its own when a turn starts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
from sqlmodel import Session, col, select

from shared.configuration import (
    AGENT_OVERRIDE_KEYS,
    Configuration,
    apply_patch,
    effective,
    for_agent,
)
from shared.errors import Conflict, ProjectNotFound, ProviderNotConfigured, SessionNotFound
from shared.models import ChatSession, Project, Thread, Turn, new_id
from shared.threads import get_thread


class AgentView(BaseModel):
    id: str
    session_id: str
    name: str
    provider_instance_id: str | None
    model_id: str | None
    status: str
    overrides: dict[str, Any]


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise ProjectNotFound(f"project {project_id!r} does not exist")
    return project


def get_session(session: Session, session_id: str) -> ChatSession:
    chat = session.get(ChatSession, session_id)
    if chat is None:
        raise SessionNotFound(f"session {session_id!r} does not exist")
    return chat


def create_project(
    session: Session, name: str, working_directory: str | None, configuration: dict[str, Any]
) -> Project:
    project = Project(
        id=new_id("prj"),
        name=name,
        working_directory=working_directory,
        configuration=configuration,
    )
    session.add(project)
    return project


def create_session(
    session: Session, project_id: str, name: str, configuration: dict[str, Any]
) -> tuple[ChatSession, str]:
    """Create the session and spawn its coordinator agent ``<session_id>.1`` with it."""
    project = get_project(session, project_id)
    _require_provider(effective(project.configuration, configuration))
    chat = ChatSession(
        id=new_id("ses"), project_id=project_id, name=name, configuration=configuration
    )
    session.add(chat)
    session.flush()
    coordinator = spawn_agent(session, chat.id, "coordinator", {})
    return chat, coordinator.id


def spawn_agent(session: Session, session_id: str, name: str, overrides: dict[str, Any]) -> Thread:
    """Create the agent's thread ``<session_id>.<n>``; raises ProviderNotConfigured."""
    chat = get_session(session, session_id)
    _require_provider(effective_for(session, chat, overrides))
    n = (
        session.connection()
        .execute(
            update(ChatSession)
            .where(col(ChatSession.id) == session_id)
            .values(agent_counter=ChatSession.agent_counter + 1)
            .returning(col(ChatSession.agent_counter))
        )
        .scalar_one()
    )
    meta = {"name": name, **{k: v for k, v in overrides.items() if v is not None}}
    thread = Thread(id=f"{session_id}.{n}", session_id=session_id, ordinal=n, meta=meta)
    session.add(thread)
    session.flush()
    return thread


def _require_provider(config: Configuration) -> None:
    if not config.provider_instance_id or not config.model_id:
        raise ProviderNotConfigured(
            "no provider instance and model are configured: set provider_instance_id and "
            "model_id on the project, the session or the agent"
        )


def effective_for(session: Session, chat: ChatSession, agent_meta: dict[str, Any]) -> Configuration:
    project = get_project(session, chat.project_id)
    return for_agent(project.configuration, chat.configuration, agent_meta)


def agent_configuration(session: Session, agent_id: str) -> tuple[Thread, Configuration]:
    thread = get_thread(session, agent_id)
    chat = get_session(session, thread.session_id)
    return thread, effective_for(session, chat, thread.meta)


def agent_view(session: Session, agent_id: str) -> AgentView:
    thread, config = agent_configuration(session, agent_id)
    return AgentView(
        id=thread.id,
        session_id=thread.session_id,
        name=thread.meta.get("name", ""),
        provider_instance_id=config.provider_instance_id,
        model_id=config.model_id,
        status=_agent_status(session, agent_id),
        overrides={k: thread.meta[k] for k in AGENT_OVERRIDE_KEYS if k in thread.meta},
    )


def _agent_status(session: Session, agent_id: str) -> str:
    head = session.exec(
        select(Turn.status)
        .where(Turn.agent_id == agent_id, col(Turn.status).in_(("running", "awaiting_approval")))
        .limit(1)
    ).first()
    return head or "idle"


def list_agents(session: Session, session_id: str, after: int, limit: int) -> list[AgentView]:
    """Agents in spawn order; ``after`` is the ordinal n of the last agent already seen."""
    get_session(session, session_id)
    query = (
        select(Thread.id)
        .where(Thread.session_id == session_id, Thread.ordinal > after)
        .order_by(col(Thread.ordinal))
        .limit(limit)
    )
    return [agent_view(session, agent_id) for agent_id in session.exec(query)]


def update_agent(session: Session, agent_id: str, patch: dict[str, Any]) -> Thread:
    thread = get_thread(session, agent_id)
    meta = apply_patch(thread.meta, patch)
    chat = get_session(session, thread.session_id)
    _require_provider(effective_for(session, chat, meta))
    thread.meta = meta
    session.add(thread)
    return thread


def list_projects(session: Session, after: str | None, limit: int) -> list[Project]:
    """Projects ordered by id; ``after`` is the id of the last project already seen."""
    query = select(Project).order_by(Project.id).limit(limit)
    if after:
        query = query.where(Project.id > after)
    return list(session.exec(query))


def update_project(
    session: Session, project_id: str, changes: dict[str, Any], config_patch: dict[str, Any]
) -> Project:
    """Set ``changes`` (name, working_directory) and PATCH the configuration."""
    project = get_project(session, project_id)
    for key, value in changes.items():
        setattr(project, key, value)
    project.configuration = apply_patch(project.configuration, config_patch)
    session.add(project)
    return project


def delete_project(session: Session, project_id: str) -> None:
    """Raises ProjectNotFound, or Conflict while the project has sessions."""
    project = get_project(session, project_id)
    if session.exec(select(ChatSession.id).where(ChatSession.project_id == project_id)).first():
        raise Conflict(f"project {project_id!r} has sessions: a project is deleted empty")
    session.delete(project)


def list_sessions(
    session: Session, project_id: str, after: str | None, limit: int
) -> list[ChatSession]:
    """A project's sessions ordered by id; ``after`` is the id of the last one already seen."""
    get_project(session, project_id)
    query = (
        select(ChatSession)
        .where(ChatSession.project_id == project_id)
        .order_by(ChatSession.id)
        .limit(limit)
    )
    if after:
        query = query.where(ChatSession.id > after)
    return list(session.exec(query))


def update_session(
    session: Session, session_id: str, changes: dict[str, Any], config_patch: dict[str, Any]
) -> ChatSession:
    """Set ``changes`` (name) and PATCH the configuration."""
    chat = get_session(session, session_id)
    for key, value in changes.items():
        setattr(chat, key, value)
    chat.configuration = apply_patch(chat.configuration, config_patch)
    session.add(chat)
    return chat
