"""The early check of agent (and session) creation: does the effective instance and model exist?

It calls ``ProviderRegistry.resolve`` alone, the function the agent itself
uses at its turn's start: 422 ``provider_instance_not_found`` or
``model_not_found``. Credentials and reachability are found at the next turn.
Without an effective instance and model the store answers
``provider_not_configured``.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from shared.configuration import AGENT_OVERRIDE_KEYS, effective
from shared.db import Database
from shared.providers.registry import ProviderRegistry
from shared.sessions import get_project, get_session


async def check_provider(registry: ProviderRegistry, *levels: dict[str, Any]) -> None:
    """``levels`` from the project to the agent; raises the registry's 422s."""
    config = effective(*levels)
    if config.provider_instance_id and config.model_id:
        await registry.resolve(config.provider_instance_id, config.model_id)


def _session_levels(session: Session, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    chat = get_session(session, session_id)
    return get_project(session, chat.project_id).configuration, chat.configuration


async def check_agent_provider(
    db: Database, registry: ProviderRegistry, session_id: str, agent_meta: dict[str, Any]
) -> None:
    """Raises SessionNotFound or the registry's 422s for an agent with ``agent_meta``."""
    project_level, session_level = await db.read(_session_levels, session_id)
    agent_level = {k: agent_meta.get(k) for k in AGENT_OVERRIDE_KEYS}
    await check_provider(registry, project_level, session_level, agent_level)
