"""Turn rows: enqueue, reads, the agent's head turn, the row lock, the sweeper's queries.

Statuses and their transitions are ``shared.status``; approvals are
``shared.approvals``; how a turn ends is ``shared.endings``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import and_, bindparam, func, insert, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from shared.errors import (
    AgentNotFound,
    AgentQueueFull,
    IdempotencyKeyReused,
    TurnNotFound,
)
from shared.models import Thread, Turn, new_id, table, utcnow
from shared.sql import Prepared
from shared.status import OPEN, TurnStatus
from shared.threads import get_thread

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def request_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


_TURNS, _THREADS = table(Turn), table(Thread)
_QUEUED_COUNT = Prepared(
    select(func.count())
    .select_from(_TURNS)
    .where(_TURNS.c.agent_id == bindparam("agent_id"), _TURNS.c.status == TurnStatus.QUEUED)
)
_NEXT_POSITION = Prepared(
    update(_THREADS)
    .where(_THREADS.c.id == bindparam("agent_id"))
    .values(position=_THREADS.c.position + 1)
    .returning(_THREADS.c.session_id, _THREADS.c.position)
)
_INSERT_TURN = Prepared(insert(_TURNS).values({c.name: bindparam(c.name) for c in _TURNS.c}))


def enqueue_turn(
    session: Session,
    agent_id: str,
    content: str,
    *,
    max_queued: int,
    idempotency_key: str | None = None,
) -> tuple[Turn, bool]:
    """Store the message as a queued turn; returns (turn, created).

    Raises AgentNotFound, AgentQueueFull or IdempotencyKeyReused.
    """
    digest = request_hash(content)
    # Taking the next position first locks the agent's thread row: enqueues of one agent
    # queue here, so a retry with the same key sees the turn a racing twin committed.
    taken = _NEXT_POSITION.execute(session, {"agent_id": agent_id}).first()
    if taken is None:
        raise AgentNotFound(f"agent {agent_id!r} does not exist")
    session_id, position = taken
    if idempotency_key is not None:
        earlier = session.exec(
            select(Turn).where(Turn.agent_id == agent_id, Turn.idempotency_key == idempotency_key)
        ).first()
        if earlier is not None and earlier.created_at > utcnow() - IDEMPOTENCY_WINDOW:
            if earlier.request_hash != digest:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another body: use a new key"
                )
            return earlier, False
        if earlier is not None:  # expired: the key may be used again
            earlier.idempotency_key = None
            session.add(earlier)
            session.flush()
    queued = _QUEUED_COUNT.execute(session, {"agent_id": agent_id}).scalar()
    if queued >= max_queued:
        raise AgentQueueFull(
            f"agent {agent_id} already has {queued} queued turns: wait for some to finish"
        )
    turn = Turn(
        id=new_id("turn"),
        agent_id=agent_id,
        session_id=session_id,
        input=content,
        position=position,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    _INSERT_TURN.run(session, turn.model_dump())
    return turn, True


def get_turn(session: Session, turn_id: str) -> Turn:
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise TurnNotFound(f"turn {turn_id!r} does not exist")
    return turn


def list_turns(session: Session, agent_id: str, before: int | None, limit: int) -> list[Turn]:
    """Newest first; ``before`` is the position of the last turn already seen."""
    get_thread(session, agent_id)
    query = select(Turn).where(Turn.agent_id == agent_id)
    if before is not None:
        query = query.where(Turn.position < before)
    return list(session.exec(query.order_by(col(Turn.position).desc()).limit(limit)))


def cancel_requested(session: Session, turn_id: str) -> bool:
    turn = session.get(Turn, turn_id)
    return bool(turn and turn.cancel_requested)


_HEAD_OPEN_TURN = Prepared(  # every claim runs it
    select(*_TURNS.c)
    .where(_TURNS.c.agent_id == bindparam("agent_id"), _TURNS.c.status.in_(sorted(OPEN)))
    .order_by(_TURNS.c.position)
    .limit(1)
)


def head_open_turn(session: Session, agent_id: str) -> Turn | None:
    """The agent's lowest-position open turn: the only one that may run."""
    row = _HEAD_OPEN_TURN.execute(session, {"agent_id": agent_id}).first_mapping()
    return None if row is None else Turn(**row)


def lock_turn(session: Session, turn_id: str) -> Turn:
    """The turn's row, locked, as committed once the lock was granted."""
    locked = select(Turn).where(Turn.id == turn_id).with_for_update()
    turn = session.exec(locked.execution_options(populate_existing=True)).first()
    if turn is None:
        raise TurnNotFound(f"turn {turn_id!r} does not exist")
    return turn


def expired_running_turns(session: Session, now: float) -> list[Turn]:
    """Running turns whose agent's lease expired: their attempt was lost."""
    return list(
        session.exec(
            select(Turn)
            .join(Thread, col(Thread.id) == Turn.agent_id)
            .where(
                Turn.status == TurnStatus.RUNNING,
                (col(Thread.lease_holder).is_(None)) | (Thread.lease_expires_at < now),
            )
        )
    )


def agents_needing_kick(session: Session, now: float, limit: int = 1000) -> list[str]:
    """Agents with no live lease whose head turn can run now: their kick may have been
    lost, their parked head turn has come due, or its cancel found the lease taken."""
    earlier = aliased(Turn)
    blocked_by_an_earlier_turn = (
        select(earlier.id)
        .where(
            earlier.agent_id == Turn.agent_id,
            col(earlier.status).in_(sorted(OPEN)),
            earlier.position < Turn.position,
        )
        .exists()
    )
    rows = session.exec(
        select(Turn.agent_id)
        .join(Thread, col(Thread.id) == Turn.agent_id)
        .where(
            col(Turn.status).in_(sorted(OPEN)),
            # shared.status.runnable, in SQL
            or_(
                col(Turn.cancel_requested),
                and_(
                    col(Turn.status) == TurnStatus.QUEUED,
                    col(Turn.not_before).is_(None) | (col(Turn.not_before) <= now),
                ),
            ),
            ~blocked_by_an_earlier_turn,
            (col(Thread.lease_holder).is_(None)) | (Thread.lease_expires_at < now),
        )
        .distinct()
        .limit(limit)
    )
    return list(rows)
