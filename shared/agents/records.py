"""Creating, changing and reading agents: one call per use case, which the API's routes make.

Each call reads what it needs once, works out the effective configuration
once (``shared.configuration.effective``), checks its instance and model
through the registry's ``resolve`` (the function the agent itself goes
through when it makes its provider: 422 ``provider_instance_not_found`` or
``model_not_found``; a missing credential or an unreachable server is found
by the agent's next turn), writes once and returns the view. A session is
created here too: it comes with its coordinator agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from shared.configuration import (
    AGENT_OVERRIDE_KEYS,
    Configuration,
    apply_patch,
    effective,
    provider_pair,
)
from shared.db import Database
from shared.models import ChatSession, Thread, Turn
from shared.providers.registry import ProviderRegistry
from shared.sessions import create_chat_session, get_chat_session, get_project, spawn_agent
from shared.status import IN_PROGRESS, TurnStatus
from shared.threads import get_thread

Levels = tuple[dict[str, Any], dict[str, Any]]  # the project's and the session's configuration


class AgentView(BaseModel):
    """An agent as the API shows it: ``provider_instance_id`` and ``model_id`` are the
    effective ones; ``overrides`` what the agent sets itself."""

    id: str
    session_id: str
    name: str
    provider_instance_id: str | None
    model_id: str | None
    status: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class AgentRecords:
    db: Database
    registry: ProviderRegistry

    async def create(self, session_id: str, name: str, overrides: dict[str, Any]) -> AgentView:
        """Spawn an agent of the session; raises SessionNotFound or the check's 422s."""
        levels = await self.db.read(_session_levels, session_id)
        config = effective(*levels, overrides)
        await self._check(config)
        return await self.db.run(_spawn, session_id, name, overrides, config)

    async def update(self, agent_id: str, patch: dict[str, Any]) -> AgentView:
        """Change the agent's own settings (``None`` removes one), from its next turn on."""
        thread, levels = await self.db.read(_agent_levels, agent_id)
        meta = apply_patch(thread.meta, patch)
        config = effective(*levels, meta)
        await self._check(config)
        return await self.db.run(_write_meta, agent_id, meta, config)

    async def view(self, agent_id: str) -> AgentView:
        return await self.db.read(_view, agent_id)

    async def list(self, session_id: str, after: int, limit: int) -> list[AgentView]:
        """Agents in spawn order; ``after`` is the ordinal n of the last agent already seen."""
        return await self.db.read(_list, session_id, after, limit)

    async def create_session(
        self,
        project_id: str,
        name: str,
        configuration: dict[str, Any],
        budget: dict[str, Any] | None = None,
    ) -> tuple[ChatSession, str]:
        """A session of the project, with its coordinator ``<session_id>.1``."""
        project = await self.db.read(get_project, project_id)
        await self._check(effective(project.configuration, configuration))
        return await self.db.run(create_chat_session, project_id, name, configuration, budget)

    async def _check(self, config: Configuration) -> None:
        """Raises ProviderNotConfigured, ProviderInstanceNotFound or ModelNotFound."""
        await self.registry.resolve(*provider_pair(config))


def _session_levels(session: Session, session_id: str) -> Levels:
    chat = get_chat_session(session, session_id)
    return get_project(session, chat.project_id).configuration, chat.configuration


def _agent_levels(session: Session, agent_id: str) -> tuple[Thread, Levels]:
    thread = get_thread(session, agent_id)
    return thread, _session_levels(session, thread.session_id)


def _spawn(
    session: Session, session_id: str, name: str, overrides: dict[str, Any], config: Configuration
) -> AgentView:
    thread = spawn_agent(session, session_id, name, overrides)
    return _view_of(thread, config, "idle")


def _write_meta(
    session: Session, agent_id: str, meta: dict[str, Any], config: Configuration
) -> AgentView:
    thread = get_thread(session, agent_id)
    thread.meta = meta
    session.add(thread)
    return _view_of(thread, config, _status(session, agent_id))


def _view(session: Session, agent_id: str) -> AgentView:
    thread, levels = _agent_levels(session, agent_id)
    return _view_of(thread, effective(*levels, thread.meta), _status(session, agent_id))


def _list(session: Session, session_id: str, after: int, limit: int) -> list[AgentView]:
    levels = _session_levels(session, session_id)
    threads = session.exec(
        select(Thread)
        .where(Thread.session_id == session_id, Thread.ordinal > after)
        .order_by(col(Thread.ordinal))
        .limit(limit)
    )
    return [
        _view_of(thread, effective(*levels, thread.meta), _status(session, thread.id))
        for thread in threads
    ]


def _view_of(thread: Thread, config: Configuration, status: str) -> AgentView:
    return AgentView(
        id=thread.id,
        session_id=thread.session_id,
        name=thread.meta.get("name", ""),
        provider_instance_id=config.provider_instance_id,
        model_id=config.model_id,
        status=status,
        overrides={k: thread.meta[k] for k in AGENT_OVERRIDE_KEYS if k in thread.meta},
    )


def _status(session: Session, agent_id: str) -> str:
    """``running`` or ``awaiting_approval`` while a turn is (a turn waiting for its
    provider or its budget counts as running), else ``idle``."""
    head = session.exec(
        select(Turn.status)
        .where(
            Turn.agent_id == agent_id,
            or_(
                col(Turn.status).in_(sorted(IN_PROGRESS)),
                and_(col(Turn.status) == TurnStatus.QUEUED, col(Turn.not_before).is_not(None)),
            ),
        )
        .order_by(col(Turn.position))
        .limit(1)
    ).first()
    if head is None:
        return "idle"
    return TurnStatus.RUNNING if head == TurnStatus.QUEUED else head
