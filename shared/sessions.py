"""Projects and chat sessions, and the thread row that makes an agent: store functions.

A chat session (``ChatSession``) is never called ``session`` here: that name is
the database's. Creating and changing agents, with their provider check, is
``shared.agents.records``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from shared.configuration import apply_patch
from shared.errors import Conflict, ProjectNotFound, SessionNotFound
from shared.models import ChatSession, Project, Thread, new_id


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise ProjectNotFound(f"project {project_id!r} does not exist")
    return project


def get_chat_session(session: Session, session_id: str) -> ChatSession:
    chat = session.get(ChatSession, session_id)
    if chat is None:
        raise SessionNotFound(f"session {session_id!r} does not exist")
    return chat


def create_project(
    session: Session,
    name: str,
    working_directory: str | None,
    configuration: dict[str, Any],
    budget: dict[str, Any] | None = None,
) -> Project:
    project = Project(
        id=new_id("prj"),
        name=name,
        working_directory=working_directory,
        configuration=configuration,
        budget=budget,
    )
    session.add(project)
    return project


def create_chat_session(
    session: Session,
    project_id: str,
    name: str,
    configuration: dict[str, Any],
    budget: dict[str, Any] | None = None,
) -> tuple[ChatSession, str]:
    """Create the session and spawn its coordinator agent ``<session_id>.1`` with it."""
    get_project(session, project_id)
    chat = ChatSession(
        id=new_id("ses"),
        project_id=project_id,
        name=name,
        configuration=configuration,
        budget=budget,
    )
    session.add(chat)
    session.flush()
    coordinator = spawn_agent(session, chat.id, "coordinator", {})
    return chat, coordinator.id


def spawn_agent(session: Session, session_id: str, name: str, overrides: dict[str, Any]) -> Thread:
    """Write the agent's thread ``<session_id>.<n>``: its name and its own overrides.

    It is only a record: no provider is made or cached here, the agent makes
    its own when a turn starts.
    """
    n = (
        session.connection()
        .execute(
            update(ChatSession)
            .where(col(ChatSession.id) == session_id)
            .values(agent_counter=ChatSession.agent_counter + 1)
            .returning(col(ChatSession.agent_counter))
        )
        .scalar_one_or_none()
    )
    if n is None:
        raise SessionNotFound(f"session {session_id!r} does not exist")
    meta = {"name": name, **{k: v for k, v in overrides.items() if v is not None}}
    thread = Thread(id=f"{session_id}.{n}", session_id=session_id, ordinal=n, meta=meta)
    session.add(thread)
    session.flush()
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
    """Set ``changes`` (name, working_directory, budget) and PATCH the configuration."""
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


def list_chat_sessions(
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


def update_chat_session(
    session: Session, session_id: str, changes: dict[str, Any], config_patch: dict[str, Any]
) -> ChatSession:
    """Set ``changes`` (name, budget) and PATCH the configuration."""
    chat = get_chat_session(session, session_id)
    for key, value in changes.items():
        setattr(chat, key, value)
    chat.configuration = apply_patch(chat.configuration, config_patch)
    session.add(chat)
    return chat
