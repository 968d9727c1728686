"""What an agent sees of the database: its thread, loaded once, and a fenced writer.

``load_thread_state`` reads the agent's metadata, its session's and
project's configuration, its events and the session's grants in the claim's
transaction; afterwards the store keeps ``state.events`` current with every
event it appends, so a turn reads the database again only for approval
decisions. ``EventCache`` keeps those events for the agent's next turn on
this worker, so a claim reads only what was appended since.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from shared.configuration import Configuration, for_agent
from shared.db import Database
from shared.endings import Ending
from shared.errors import AgentNotFound
from shared.events import Envelope, NewEvent, StoredEvent
from shared.models import Approval, ChatSession, Project, SessionGrant, Thread, Turn, table
from shared.providers.instances import InstanceRead, load_instance_and_credential
from shared.sql import Prepared
from shared.threads import ThreadWriter, events_after, requeue_turn, update_turn
from shared.turns import add_approval_requests, load_decisions, lock_turn, pending_count

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
class ThreadState:
    thread_id: str
    session_id: str
    project_id: str
    working_directory: str | None
    meta: dict[str, Any]
    configuration: Configuration
    events: list[StoredEvent]
    grants: set[str] = field(default_factory=set)
    instance_read: InstanceRead | None = None  # the provider instance the next turn uses

    def provider_target(self, turn: Turn | None = None) -> tuple[str | None, str | None]:
        """The turn's pinned pair, else the agent's configuration (its overrides included)."""
        if turn is not None and turn.provider_instance_id and turn.model_id:
            return turn.provider_instance_id, turn.model_id
        return self.configuration.provider_instance_id, self.configuration.model_id


def load_thread_state(
    session: Session, thread_id: str, known: Sequence[StoredEvent] = (), turn: Turn | None = None
) -> ThreadState:
    """The agent's state for ``turn``; ``known`` is a prefix of its events already in memory.

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
    state = ThreadState(
        thread_id=thread_id,
        session_id=session_id,
        project_id=project_id,
        working_directory=working_directory,
        meta=meta,
        configuration=for_agent(project_conf, session_conf, meta),
        events=[*known, *events_after(session, thread_id, after, MAX_EVENTS)],
        grants=set(grants),
    )
    instance_id, _ = state.provider_target(turn)
    if instance_id:
        found = load_instance_and_credential(session, instance_id)
        state.instance_read = InstanceRead(instance_id, found)
    return state


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


class ThreadStore:
    def __init__(self, db: Database, writer: ThreadWriter, state: ThreadState) -> None:
        self._db = db
        self._writer = writer
        self.state = state

    @property
    def holder(self) -> str:
        """Who holds the lease: the worker running this turn."""
        return self._writer.lease.holder

    def workspace(self, data_dir: Path) -> Path:
        if self.state.working_directory:
            return Path(self.state.working_directory)
        return data_dir / "workspaces" / self.state.project_id

    async def append(
        self,
        turn_id: str,
        events: Sequence[NewEvent],
        *,
        turn_changes: dict[str, Any] | None = None,
        approvals: list[Approval] | None = None,
    ) -> list[StoredEvent]:
        also = (lambda s: add_approval_requests(s, approvals)) if approvals else None
        rows = await self._writer.append(turn_id, events, turn_changes=turn_changes, also=also)
        self.state.events.extend(rows)
        return rows

    async def end_turn(
        self, turn_id: str, turn_events: Sequence[StoredEvent], ending: Ending
    ) -> str:
        """Commit the turn's ending and release the lease; returns the status recorded."""
        rows, recorded = await self._writer.end_turn(turn_id, turn_events, ending)
        self.state.events.extend(rows)
        return recorded.status

    def publish(self, envelope: Envelope) -> None:
        self._writer.publish(envelope)

    async def decisions(self, turn_id: str) -> dict[str, str | None]:
        return await self._db.read(load_decisions, turn_id)

    async def suspend(self, turn_id: str, running_s: float, usage: dict[str, int]) -> Suspension:
        """Park the turn awaiting approval and release the lease, unless every call is
        decided already, or the turn's cancel was accepted (it must end cancelled)."""
        return await self._writer.transact(_suspend, turn_id, running_s, usage)

    async def requeue(self, turn_id: str, running_s: float) -> bool:
        """Hand the turn back to the queue (worker shutdown) and release the lease; False
        (nothing changed) when the turn's cancel was accepted: it must end cancelled."""
        return await self._writer.transact(_requeue, turn_id, running_s)


class Suspension(Enum):
    SUSPENDED = "suspended"
    DECIDED = "decided"  # every decision is in: go on
    CANCELLED = "cancelled"


def _suspend(
    session: Session, writer: ThreadWriter, turn_id: str, running_s: float, usage: dict[str, int]
) -> Suspension:
    turn = lock_turn(session, turn_id)
    if turn.cancel_requested:
        return Suspension.CANCELLED
    if pending_count(session, turn_id) == 0:
        return Suspension.DECIDED
    update_turn(
        session, turn_id, {"status": "awaiting_approval", "running_s": running_s, "usage": usage}
    )
    writer.release_in(session)
    return Suspension.SUSPENDED


def _requeue(session: Session, writer: ThreadWriter, turn_id: str, running_s: float) -> bool:
    if not requeue_turn(session, turn_id, {"running_s": running_s}):
        return False
    writer.release_in(session)
    return True
