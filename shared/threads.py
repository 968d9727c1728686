"""The thread store: fenced appends with gapless seqs, reads, and the writer a turn uses.

A thread's events are ordered by ``seq`` (per thread) and ``session_seq``
(per session); both come from counter columns updated in the append's own
transaction, never from ``max(seq)+1``, so commit order is cursor order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from shared.db import Database
from shared.errors import AgentNotFound, TurnNotOpen
from shared.events import Envelope, NewEvent
from shared.leases import Lease, fence_seqs, release_lease
from shared.models import ChatSession, Thread, ThreadEvent, Turn, utcnow
from shared.sink import EventSink

T = TypeVar("T")
OPEN_STATUSES = ("queued", "running", "awaiting_approval")


def append_events(
    session: Session,
    lease: Lease,
    turn_id: str | None,
    events: Sequence[NewEvent],
    published_seq: int,
) -> list[ThreadEvent]:
    """Append under the lease (raises LeaseLost) and return the stored events."""
    count = len(events)
    last_seq = fence_seqs(session, lease, count, published_seq)
    last_session_seq = (
        session.connection()
        .execute(
            update(ChatSession)
            .where(col(ChatSession.id) == lease.session_id)
            .values(session_seq=ChatSession.session_seq + count)
            .returning(col(ChatSession.session_seq))
        )
        .scalar_one()
    )
    now = utcnow()
    rows = [
        ThreadEvent(
            thread_id=lease.thread_id,
            seq=last_seq - count + 1 + i,
            session_id=lease.session_id,
            session_seq=last_session_seq - count + 1 + i,
            type=event.type,
            data=event.data,
            turn_id=turn_id,
            created_at=now,
        )
        for i, event in enumerate(events)
    ]
    if rows:  # one multi-row Core INSERT: the ORM would insert row by row on SQLite
        session.connection().execute(
            insert(ThreadEvent), [row.model_dump(exclude={"id"}) for row in rows]
        )
    return rows


def update_turn(session: Session, turn_id: str, changes: dict[str, Any]) -> None:
    """Change a turn the lease holder runs; raises TurnNotOpen once it has ended.

    The API cancels a queued turn on its row without the lease, so a worker
    starting that same turn must find out here and roll its start back.
    """
    result = session.connection().execute(
        update(Turn)
        .where(col(Turn.id) == turn_id, col(Turn.status).in_(OPEN_STATUSES))
        .values(**changes)
    )
    if result.rowcount != 1:
        raise TurnNotOpen(f"turn {turn_id} has already ended")


def events_after(session: Session, thread_id: str, after: int, limit: int) -> list[ThreadEvent]:
    query = (
        select(ThreadEvent)
        .where(ThreadEvent.thread_id == thread_id, ThreadEvent.seq > after)
        .order_by(col(ThreadEvent.seq))
        .limit(limit)
    )
    return list(session.exec(query))


def session_events_after(
    session: Session, session_id: str, after: int, limit: int
) -> list[ThreadEvent]:
    query = (
        select(ThreadEvent)
        .where(ThreadEvent.session_id == session_id, ThreadEvent.session_seq > after)
        .order_by(col(ThreadEvent.session_seq))
        .limit(limit)
    )
    return list(session.exec(query))


def get_thread(session: Session, thread_id: str) -> Thread:
    thread = session.get(Thread, thread_id)
    if thread is None:
        raise AgentNotFound(f"agent {thread_id!r} does not exist")
    return thread


def set_thread_meta(session: Session, thread_id: str, changes: dict[str, Any]) -> Thread:
    """Merge ``changes`` into the thread's metadata (``None`` removes a key)."""
    thread = get_thread(session, thread_id)
    meta = dict(thread.meta)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    thread.meta = meta
    session.add(thread)
    return thread


def to_envelope(event: ThreadEvent) -> Envelope:
    return Envelope(
        type=event.type,
        session_id=event.session_id,
        agent_id=event.thread_id,
        turn_id=event.turn_id,
        seq=event.seq,
        session_seq=event.session_seq,
        data=event.data,
    )


@dataclass
class ThreadWriter:
    """Appends a lease holder's events: commit under the fence, then publish.

    ``turn_changes`` and ``release`` ride in the append's transaction, so a
    turn's closing event, its row and the lease's release commit together.
    """

    db: Database
    lease: Lease
    sink: EventSink
    published_seq: int = field(init=False)
    released: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.published_seq = self.lease.published_seq

    async def append(
        self,
        turn_id: str | None,
        events: Sequence[NewEvent],
        *,
        turn_changes: dict[str, Any] | None = None,
        also: Callable[[Session], None] | None = None,
        release: bool = False,
    ) -> list[ThreadEvent]:
        rows = await self.db.run(self._commit, turn_id, list(events), turn_changes, also, release)
        self.released = self.released or release
        if rows:
            await self.sink.publish([to_envelope(row) for row in rows])
            self.published_seq = rows[-1].seq
        return rows

    def _commit(
        self,
        session: Session,
        turn_id: str | None,
        events: list[NewEvent],
        turn_changes: dict[str, Any] | None,
        also: Callable[[Session], None] | None,
        release: bool,
    ) -> list[ThreadEvent]:
        rows = append_events(session, self.lease, turn_id, events, self.published_seq)
        if turn_changes and turn_id is not None:
            update_turn(session, turn_id, turn_changes)
        if also is not None:
            also(session)
        if release:
            last = rows[-1].seq if rows else self.published_seq
            release_lease(session, self.lease, last)
        return rows

    async def transact(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, lease, *args)`` in one transaction behind the fence."""
        return await self.db.run(self._fenced, fn, *args)

    def _fenced(self, session: Session, fn: Callable[..., T], *args: Any) -> T:
        fence_seqs(session, self.lease, 0, self.published_seq)
        return fn(session, self, *args)

    async def release(self) -> None:
        """Give the lease up unless a closing transaction already did."""
        if not self.released:
            await self.db.run(release_lease, self.lease)
            self.released = True

    async def publish(self, envelope: Envelope) -> None:
        """Publish an ephemeral event (never persisted)."""
        await self.sink.publish([envelope])
