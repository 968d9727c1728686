"""What an agent is at a turn's start: its thread, loaded once, and its configuration.

``load_agent_context`` reads, in the claim's transaction, the agent's
metadata, its session's and project's configuration, its events, the
session's grants and the provider instance the turn will use; afterwards the
recorder (``shared.agents.recorder``) keeps ``events`` current with every
event it appends, so a turn reads the database again only for approval
decisions. ``EventCache`` keeps those events for the agent's next turn on
this worker, so a claim reads only what was appended since.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from shared.configuration import Configuration, effective
from shared.errors import AgentNotFound
from shared.events import StoredEvent
from shared.models import ChatSession, Project, SessionGrant, Thread, Turn, table
from shared.providers.instances import InstanceRead, load_instance_and_credential
from shared.providers.registry import ProviderTarget
from shared.sql import Prepared
from shared.threads import events_after

MAX_EVENTS = 10_000_000

_THREADS, _SESSIONS, _PROJECTS = table(Thread), table(ChatSession), table(Project)
_AGENT_CONTEXT = Prepared(
    select(
        _THREADS.c.session_id,
        _THREADS.c.meta,
        _SESSIONS.c.configuration,
        _PROJECTS.c.id,
        _PROJECTS.c.configuration,
        _PROJECTS.c.working_directory,
    )
    .join(_SESSIONS, _SESSIONS.c.id == _THREADS.c.session_id)
    .join(_PROJECTS, _PROJECTS.c.id == _SESSIONS.c.project_id)
    .where(_THREADS.c.id == bindparam("agent_id"))
)
_GRANTS = table(SessionGrant)
_SESSION_GRANTS = Prepared(
    select(_GRANTS.c.tool).where(_GRANTS.c.session_id == bindparam("session_id"))
)


@dataclass
class AgentContext:
    """An agent as its thread and configuration define it: all a turn needs to run it."""

    thread_id: str
    session_id: str
    project_id: str
    working_directory: str | None
    configuration: Configuration
    events: list[StoredEvent]  # the whole thread, kept current by the recorder
    grants: set[str] = field(default_factory=set)
    prefetched: InstanceRead | None = None  # the provider instance, as the claim read it

    def provider_target(self, turn: Turn | None = None) -> ProviderTarget:
        """What the turn's provider is made for: its pinned pair once it started, else the
        agent's configuration (its own overrides included). The one source of the pair."""
        source: Turn | Configuration = self.configuration
        if turn is not None and turn.provider_instance_id and turn.model_id:
            source = turn
        instance_id, model_id = source.provider_instance_id, source.model_id
        read = self.prefetched
        return ProviderTarget(
            instance_id, model_id, read if read and read.instance_id == instance_id else None
        )

    def instance_limits(self) -> dict[str, Any]:
        """The limits of the provider instance the claim read (none when it read none)."""
        found = self.prefetched.found if self.prefetched else None
        return found[0].limits if found else {}

    def workspace(self, data_dir: Path) -> Path:
        if self.working_directory:
            return Path(self.working_directory)
        return data_dir / "workspaces" / self.project_id


def load_agent_context(
    session: Session, thread_id: str, known: Sequence[StoredEvent] = (), turn: Turn | None = None
) -> AgentContext:
    """The agent's context for ``turn``; ``known`` is a prefix of its events already in memory.

    Committed events never change and seqs have no gaps, so the prefix plus the
    events after its last seq is the whole thread. The provider instance the
    turn will use is read here too, so making the provider costs no transaction.
    """
    row = _AGENT_CONTEXT.execute(session, {"agent_id": thread_id}).first()
    if row is None:
        raise AgentNotFound(f"agent {thread_id!r} does not exist")
    session_id, meta, session_conf, project_id, project_conf, working_directory = row
    after = known[-1].seq if known else 0
    grants = _SESSION_GRANTS.execute(session, {"session_id": session_id}).scalars()
    context = AgentContext(
        thread_id=thread_id,
        session_id=session_id,
        project_id=project_id,
        working_directory=working_directory,
        configuration=effective(project_conf, session_conf, meta),
        events=[*known, *events_after(session, thread_id, after, MAX_EVENTS)],
        grants=set(grants),
    )
    instance_id = context.provider_target(turn).instance_id
    if instance_id:
        found = load_instance_and_credential(session, instance_id)
        context.prefetched = InstanceRead(instance_id, found)
    return context


class EventCache:
    """Each agent's events as its last turn on this worker left them, least recent out first.

    Only the lease holder reads or refreshes an agent's entry, so entries need
    no lock; a stale one (the agent ran elsewhere since) is only a shorter
    prefix. ``max_events`` bounds the events held over all agents.
    """

    def __init__(self, max_events: int) -> None:
        self._max_events = max_events
        self._held = 0
        self._threads: OrderedDict[str, list[StoredEvent]] = OrderedDict()

    def take(self, agent_id: str) -> list[StoredEvent]:
        events = self._threads.pop(agent_id, [])
        self._held -= len(events)
        return events

    def keep(self, agent_id: str, events: list[StoredEvent]) -> None:
        self.take(agent_id)
        if len(events) > self._max_events:
            return
        self._threads[agent_id] = events
        self._held += len(events)
        while self._held > self._max_events:
            _, evicted = self._threads.popitem(last=False)
            self._held -= len(evicted)
