"""What an agent sees of the database: its thread, loaded once, and a fenced writer.

``ThreadStore.load`` reads the thread, its session's configuration, its
events and the session's grants in one short transaction; afterwards the
store keeps ``state.events`` current with every event it appends, so a turn
reads the database again only for approval decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from shared.configuration import Configuration
from shared.db import Database
from shared.events import Envelope, NewEvent
from shared.leases import release_lease
from shared.models import Approval, Thread, ThreadEvent
from shared.sessions import agent_configuration, get_project, get_session
from shared.threads import ThreadWriter, events_after, update_turn
from shared.turns import (
    add_approval_requests,
    load_decisions,
    lock_turn,
    pending_count,
    session_grants,
)

MAX_EVENTS = 10_000_000


@dataclass
class ThreadState:
    thread: Thread
    session_id: str
    project_id: str
    working_directory: str | None
    configuration: Configuration
    events: list[ThreadEvent]
    grants: set[str] = field(default_factory=set)


def load_thread_state(session: Session, thread_id: str) -> ThreadState:
    thread, config = agent_configuration(session, thread_id)
    chat = get_session(session, thread.session_id)
    project = get_project(session, chat.project_id)
    return ThreadState(
        thread=thread,
        session_id=thread.session_id,
        project_id=project.id,
        working_directory=project.working_directory,
        configuration=config,
        events=events_after(session, thread_id, 0, MAX_EVENTS),
        grants=session_grants(session, thread.session_id),
    )


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
        release: bool = False,
    ) -> list[ThreadEvent]:
        also = (lambda s: add_approval_requests(s, approvals)) if approvals else None
        rows = await self._writer.append(
            turn_id, events, turn_changes=turn_changes, also=also, release=release
        )
        self.state.events.extend(rows)
        return rows

    async def publish(self, envelope: Envelope) -> None:
        await self._writer.publish(envelope)

    async def decisions(self, turn_id: str) -> dict[str, str | None]:
        return await self._db.read(load_decisions, turn_id)

    async def suspend(self, turn_id: str, running_s: float, usage: dict[str, int]) -> bool:
        """Park the turn awaiting approval and release the lease; False if all are decided."""
        return await self._writer.transact(_suspend, turn_id, running_s, usage)

    async def requeue(self, turn_id: str, running_s: float) -> None:
        """Hand the turn back to the queue (worker shutdown) and release the lease."""
        await self._writer.transact(_requeue, turn_id, running_s)


def _suspend(
    session: Session, writer: ThreadWriter, turn_id: str, running_s: float, usage: dict[str, int]
) -> bool:
    lock_turn(session, turn_id)
    if pending_count(session, turn_id) == 0:
        return False
    update_turn(
        session, turn_id, {"status": "awaiting_approval", "running_s": running_s, "usage": usage}
    )
    release_lease(session, writer.lease)
    writer.released = True
    return True


def _requeue(session: Session, writer: ThreadWriter, turn_id: str, running_s: float) -> None:
    update_turn(session, turn_id, {"status": "queued", "running_s": running_s})
    release_lease(session, writer.lease)
    writer.released = True
