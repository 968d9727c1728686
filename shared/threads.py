"""The thread store: fenced appends with gapless seqs, reads, and the writer a turn uses.

A thread's events are ordered by ``seq`` (per thread) and ``session_seq``
(per session); both come from counter columns updated in the append's own
transaction, never from ``max(seq)+1``, so commit order is cursor order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from shared.db import Database
from shared.endings import Ending
from shared.errors import AgentNotFound, TurnCancelled, TurnNotOpen
from shared.events import Envelope, NewEvent, StoredEvent
from shared.leases import Lease, fence_seqs, release_lease, renew_lease
from shared.models import (
    CLOSED_DECISION,
    Approval,
    ChatSession,
    Thread,
    ThreadEvent,
    Turn,
    table,
    utcnow,
)
from shared.sink import EventSink
from shared.sql import Prepared
from shared.status import OPEN, TurnStatus, predecessors, runnable

T = TypeVar("T")
P = ParamSpec("P")

# Compiled once (shared.sql): these run several times per turn, and SQLAlchemy's
# execution path costs more than executing them on SQLite.
_EVENTS = table(ThreadEvent)
_EVENT_FIELDS = tuple(f.name for f in fields(StoredEvent))
_EVENT_COLUMNS = tuple(_EVENTS.c[name] for name in _EVENT_FIELDS)
_INSERT_EVENT = Prepared(insert(_EVENTS).values({name: bindparam(name) for name in _EVENT_FIELDS}))
_THREAD_EVENTS_AFTER = Prepared(
    select(*_EVENT_COLUMNS)
    .where(_EVENTS.c.thread_id == bindparam("key"), _EVENTS.c.seq > bindparam("after"))
    .order_by(_EVENTS.c.seq)
    .limit(bindparam("limit"))
)
_SESSION_EVENTS_AFTER = Prepared(
    select(*_EVENT_COLUMNS)
    .where(_EVENTS.c.session_id == bindparam("key"), _EVENTS.c.session_seq > bindparam("after"))
    .order_by(_EVENTS.c.session_seq)
    .limit(bindparam("limit"))
)
_TURNS = table(Turn)
_HEAD_STATUS = Prepared(
    select(_TURNS.c.status, _TURNS.c.not_before, _TURNS.c.cancel_requested)
    .where(_TURNS.c.agent_id == bindparam("agent_id"), _TURNS.c.status.in_(sorted(OPEN)))
    .order_by(_TURNS.c.position)
    .limit(1)
)
# One statement per set of changed columns (a handful: start, end, suspend...).
_UPDATE_OPEN_TURN_SETTING: dict[tuple[frozenset[str], str | None, bool], Prepared] = {}
_TURN_FLAG = Prepared(
    select(_TURNS.c.status, _TURNS.c.cancel_requested).where(_TURNS.c.id == bindparam("turn_id"))
)
_TURN_EVENTS = Prepared(
    select(*_EVENT_COLUMNS)
    .where(_EVENTS.c.thread_id == bindparam("thread_id"), _EVENTS.c.turn_id == bindparam("turn_id"))
    .order_by(_EVENTS.c.seq)
)
_APPROVALS = table(Approval)
_CLOSE_REQUESTS = Prepared(
    update(_APPROVALS)
    .where(_APPROVALS.c.turn_id == bindparam("of_turn"), _APPROVALS.c.decision.is_(None))
    .values(decision=CLOSED_DECISION, decided_at=bindparam("decided_at"))
)
_SESSIONS = table(ChatSession)
_ALLOCATE_SESSION_SEQS = Prepared(
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("session_id"))
    .values(session_seq=_SESSIONS.c.session_seq + bindparam("count"))
    .returning(_SESSIONS.c.session_seq)
)


def append_events(
    session: Session,
    lease: Lease,
    turn_id: str | None,
    events: Sequence[NewEvent],
    published_seq: int,
) -> list[StoredEvent]:
    """Append under the lease (raises LeaseLost) and return the stored events."""
    last_seq = fence_seqs(session, lease, len(events), published_seq)
    return _store_events(session, lease, turn_id, events, last_seq)


def _store_events(
    session: Session,
    lease: Lease,
    turn_id: str | None,
    events: Sequence[NewEvent],
    last_seq: int,
) -> list[StoredEvent]:
    """Insert events whose seqs the fence allocated, ending at ``last_seq``."""
    count = len(events)
    if not count:
        return []
    last_session_seq = _ALLOCATE_SESSION_SEQS.execute(
        session, {"session_id": lease.session_id, "count": count}
    ).scalar()
    now = utcnow()
    stored = [
        StoredEvent(
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
    _INSERT_EVENT.execute_many(
        session, [{name: getattr(e, name) for name in _EVENT_FIELDS} for e in stored]
    )
    return stored


def update_turn(session: Session, turn_id: str, changes: dict[str, Any]) -> None:
    """Change a turn the lease holder runs; raises TurnNotOpen once it has ended.

    A new ``status`` is conditioned on the statuses the lifecycle lets it leave
    (``shared.status``). The API cancels a queued turn on its row without the
    lease, so a worker starting that same turn must find out here and roll its
    start back.
    """
    params = {f"new_{column}": value for column, value in changes.items()}
    if _update_open_turn(changes).run(session, {"turn_key": turn_id, **params}) != 1:
        raise TurnNotOpen(f"turn {turn_id} has already ended")


def _update_open_turn(changes: dict[str, Any], *, unless_cancelled: bool = False) -> Prepared:
    status = changes.get("status")
    key = (frozenset(changes), status, unless_cancelled)
    prepared = _UPDATE_OPEN_TURN_SETTING.get(key)
    if prepared is None:
        values = {c: bindparam(f"new_{c}", type_=_TURNS.c[c].type) for c in sorted(changes)}
        leaving = predecessors(TurnStatus(status)) if status else sorted(OPEN)
        statement = (
            update(_TURNS)
            .where(_TURNS.c.id == bindparam("turn_key"), _TURNS.c.status.in_(leaving))
            .values(values)
        )
        if unless_cancelled:
            statement = statement.where(_TURNS.c.cancel_requested.is_(False))
        prepared = Prepared(statement)
        _UPDATE_OPEN_TURN_SETTING[key] = prepared
    return prepared


def _change_unless_cancelled(session: Session, turn_id: str, changes: dict[str, Any]) -> bool:
    """Change the open turn unless its cancel was accepted; False when it was.

    The UPDATE takes the turn's row lock, the lock a cancel and a decision take,
    so a cancel either committed its flag before (False here) or waits and then
    finds the turn changed. Raises TurnNotOpen once the turn has ended.
    """
    params = {"turn_key": turn_id, **{f"new_{c}": v for c, v in changes.items()}}
    if _update_open_turn(changes, unless_cancelled=True).run(session, params) == 1:
        return True
    row = _TURN_FLAG.execute(session, {"turn_id": turn_id}).first()
    if row is None or row[0] not in OPEN:
        raise TurnNotOpen(f"turn {turn_id} has already ended")
    return False


def start_turn(session: Session, turn_id: str, changes: dict[str, Any]) -> None:
    """Set the open turn running; raises TurnCancelled when its cancel was accepted
    first (the transaction rolls back: nothing of the turn runs)."""
    if not _change_unless_cancelled(session, turn_id, {"status": TurnStatus.RUNNING, **changes}):
        raise TurnCancelled(f"turn {turn_id} was cancelled before it could run")


def requeue_turn(session: Session, turn_id: str, changes: dict[str, Any]) -> bool:
    """Hand a turn back to the queue; False (and unchanged) when its cancel was accepted.
    A turn whose start never committed (the worker stopped first) is queued already."""
    if _change_unless_cancelled(session, turn_id, {"status": TurnStatus.QUEUED, **changes}):
        return True
    row = _TURN_FLAG.execute(session, {"turn_id": turn_id}).first()  # open: it exists
    return row is not None and row[0] == TurnStatus.QUEUED and not row[1]


def end_turn_row(
    session: Session, turn_id: str, ending: Ending, turn_events: Sequence[StoredEvent]
) -> Ending:
    """Record ``ending`` on the turn's row; returns it, or its cancelled form when the
    turn's cancel was accepted first. Raises TurnNotOpen once the turn has ended."""
    if ending.status == TurnStatus.CANCELLED:
        update_turn(session, turn_id, ending.turn_changes(turn_events))
        return ending
    if _change_unless_cancelled(session, turn_id, ending.turn_changes(turn_events)):
        return ending
    cancelled = ending.as_cancelled()
    update_turn(session, turn_id, cancelled.turn_changes(turn_events))
    return cancelled


def events_of_turn(session: Session, thread_id: str, turn_id: str) -> list[StoredEvent]:
    """One turn's events, in order."""
    rows = _TURN_EVENTS.execute(session, {"thread_id": thread_id, "turn_id": turn_id})
    return [StoredEvent(*row) for row in rows.all()]


def close_requests(session: Session, turn_id: str) -> None:
    """Mark the turn's undecided approval requests closed: they will never be decided."""
    _CLOSE_REQUESTS.run(session, {"of_turn": turn_id, "decided_at": utcnow()})


def events_after(session: Session, thread_id: str, after: int, limit: int) -> list[StoredEvent]:
    """The thread's events with ``seq > after``, in order."""
    rows = _THREAD_EVENTS_AFTER.execute(session, {"key": thread_id, "after": after, "limit": limit})
    return [StoredEvent(*row) for row in rows.all()]


def session_events_after(
    session: Session, session_id: str, after: int, limit: int
) -> list[StoredEvent]:
    """The session's events with ``session_seq > after``, in order."""
    rows = _SESSION_EVENTS_AFTER.execute(
        session, {"key": session_id, "after": after, "limit": limit}
    )
    return [StoredEvent(*row) for row in rows.all()]


def has_runnable_turn(session: Session, agent_id: str) -> bool:
    """True when the agent's head turn can run now (``shared.status.runnable``)."""
    head = _HEAD_STATUS.execute(session, {"agent_id": agent_id}).first()
    return head is not None and runnable(*head)


def get_thread(session: Session, thread_id: str) -> Thread:
    thread = session.get(Thread, thread_id)
    if thread is None:
        raise AgentNotFound(f"agent {thread_id!r} does not exist")
    return thread


@dataclass
class ThreadWriter:
    """Appends a lease holder's events: commit under the fence, then publish.

    ``end_turn`` commits a turn's closing events, its row and the lease's
    release together. A holder that will run the agent's next turn itself
    sets ``hold``: a turn's ending then keeps the lease when a turn is runnable
    (renewed for ``hold_s``), and the holder goes on without a new claim.
    """

    db: Database
    lease: Lease
    sink: EventSink
    hold: Callable[[], bool] = lambda: False
    hold_s: float = 0.0
    published_seq: int = field(init=False)
    last_seq: int = field(init=False)  # the thread's seq after this writer's appends
    released: bool = field(default=False, init=False)
    held_over: bool = field(default=False, init=False)
    # Read in the releasing transaction: whether the agent's head turn is queued.
    runnable_after_release: bool | None = field(default=None, init=False)
    held_until: float = field(default=0.0, init=False)  # a hold-over's renewal, once committed

    def __post_init__(self) -> None:
        self.published_seq = self.lease.published_seq
        self.last_seq = self.lease.seq

    async def append(
        self,
        turn_id: str | None,
        events: Sequence[NewEvent],
        *,
        turn_changes: dict[str, Any] | None = None,
        also: Callable[[Session], None] | None = None,
    ) -> list[StoredEvent]:
        """Append (with ``turn_changes`` and ``also`` in the same transaction); raises
        LeaseLost, or TurnNotOpen when the turn to change has ended."""
        rows = await self.db.run(self._commit, turn_id, list(events), turn_changes, also)
        self._publish(rows)
        return rows

    async def end_turn(
        self, turn_id: str, ending: Ending, turn_events: Sequence[StoredEvent] | None = None
    ) -> tuple[list[StoredEvent], Ending]:
        """Commit ``ending`` and release the lease (or hold it over), in one transaction.

        The turn's open calls get their aborted results beside the closing event,
        derived from ``turn_events``, else from the turn's events as the closing
        transaction reads them. A holder passes its own copy only when nothing can
        have interrupted an append (a cancellation can land while an append's
        transaction commits, and the copy would miss its events). Returns the events stored and
        the ending as recorded: cancelled when the turn's cancel was accepted
        first. Raises LeaseLost, or TurnNotOpen when the turn had already ended.
        """
        hold = self.hold()
        known = None if turn_events is None else list(turn_events)
        rows, ending = await self.db.run(self._commit_ending, turn_id, known, ending, hold)
        if self.held_over:  # committed: the renewal is the lease's now
            self.lease.valid_until = self.held_until
        self._publish(rows)
        return rows, ending

    def _publish(self, rows: list[StoredEvent]) -> None:
        if rows:
            # Not awaited: the publisher keeps the order. The events count as published
            # (for the next fence) once Redis took them; until then a new holder would
            # publish them again, and streams drop duplicates.
            last = rows[-1].seq
            self.sink.publish_nowait(
                [row.envelope() for row in rows], on_sent=lambda: self._published(last)
            )

    def _published(self, seq: int) -> None:
        self.published_seq = max(self.published_seq, seq)

    def _commit(
        self,
        session: Session,
        turn_id: str | None,
        events: list[NewEvent],
        turn_changes: dict[str, Any] | None,
        also: Callable[[Session], None] | None,
    ) -> list[StoredEvent]:
        rows = append_events(session, self.lease, turn_id, events, self.published_seq)
        if turn_changes and turn_id is not None:
            update_turn(session, turn_id, turn_changes)
        if also is not None:
            also(session)
        if rows:
            self.last_seq = rows[-1].seq
        return rows

    def _commit_ending(
        self,
        session: Session,
        turn_id: str,
        known: list[StoredEvent] | None,
        ending: Ending,
        hold: bool,
    ) -> tuple[list[StoredEvent], Ending]:
        if known is None:
            # Lock the thread row before reading: an append still committing on another
            # connection holds it, and its events must be in what this ending closes.
            fence_seqs(session, self.lease, 0, self.published_seq)
            turn_events = events_of_turn(session, self.lease.thread_id, turn_id)
        else:
            turn_events = known
        events = ending.events(turn_events)
        # The fence first (the thread row, then the turn row: every transaction that
        # takes both takes them in that order). A cancelled form has as many events.
        last_seq = fence_seqs(session, self.lease, len(events), self.published_seq)
        recorded = end_turn_row(session, turn_id, ending, turn_events)
        if recorded is not ending:
            events = recorded.events(turn_events)
        rows = _store_events(session, self.lease, turn_id, events, last_seq)
        if any(e.type == "tool_approval_request" for e in turn_events):
            close_requests(session, turn_id)
        self.last_seq = rows[-1].seq
        if hold:
            self._hold_or_release_in(session, self.last_seq)
        else:
            self.release_in(session, self.last_seq)
        return rows, recorded

    def release_in(self, session: Session, published_seq: int | None = None) -> None:
        """Release the lease in ``session``'s transaction, then read whether a turn waits.

        The read may share the release's transaction: an enqueue committed after
        it kicks a claim that runs after it, and that claim's UPDATE of the
        thread row waits for this transaction (SQLite: one writer at a time;
        PostgreSQL: the row lock the release took, re-read under READ
        COMMITTED), so it finds the lease free.
        """
        release_lease(session, self.lease, published_seq)
        self.released = True
        self.runnable_after_release = has_runnable_turn(session, self.lease.thread_id)

    def _hold_or_release_in(self, session: Session, published_seq: int) -> None:
        """Renew the lease (which locks the thread row, as a release does), read whether
        a turn waits, and keep the lease for it, or release it when none does."""
        self.held_until = renew_lease(session, self.lease, self.hold_s)
        runnable = has_runnable_turn(session, self.lease.thread_id)
        if not runnable:
            release_lease(session, self.lease, published_seq)
        self.held_over, self.released = runnable, not runnable
        self.runnable_after_release = runnable

    def next_turn(self) -> Lease:
        """After a hold-over: the lease as the next turn's claim sees it. What this writer
        appended is its own to publish (in order), so nothing counts as unpublished."""
        self.held_over = False
        self.runnable_after_release = None
        self.lease = replace(self.lease, seq=self.last_seq, published_seq=self.last_seq)
        return self.lease

    async def transact(
        self,
        fn: Callable[Concatenate[Session, ThreadWriter, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(session, self, *args)`` in one transaction behind the fence."""

        def fenced(session: Session) -> T:
            fence_seqs(session, self.lease, 0, self.published_seq)
            return fn(session, self, *args, **kwargs)

        return await self.db.run(fenced)

    async def release(self) -> None:
        """Give the lease up unless a closing transaction already did."""
        if not self.released:
            await self.db.run(self.release_in)

    def publish(self, envelope: Envelope) -> None:
        """Publish an ephemeral event (never persisted), after those before it, while this
        holder's lease is current: once it may have passed to another holder (this one
        was paused past it), the attempt is no longer the turn's, nor are its tokens."""
        lease = self.lease
        if lease.is_current():
            self.sink.publish_nowait([envelope], still_current=lease.is_current)
