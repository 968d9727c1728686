"""Turn rows: enqueue, the agent's head turn, cancel, approvals and the sweeper's queries.

Statuses and transitions are ARCHITECTURE section 2's: queued -> running |
cancelled; running -> awaiting_approval | queued | completed | failed |
cancelled; awaiting_approval -> queued | cancelled.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import bindparam, func, insert, update
from sqlmodel import Session, col, select

from shared.errors import (
    AgentNotFound,
    AgentQueueFull,
    ApprovalAlreadyDecided,
    ApprovalNotFound,
    IdempotencyKeyReused,
    TurnCancelled,
    TurnNotFound,
)
from shared.models import Approval, SessionGrant, Thread, Turn, new_id, table, utcnow
from shared.sql import Prepared
from shared.threads import OPEN_STATUSES, get_thread

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def request_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


_TURNS, _THREADS = table(Turn), table(Thread)
_QUEUED_COUNT = Prepared(
    select(func.count())
    .select_from(_TURNS)
    .where(_TURNS.c.agent_id == bindparam("agent_id"), _TURNS.c.status == "queued")
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
    .where(_TURNS.c.agent_id == bindparam("agent_id"), _TURNS.c.status.in_(OPEN_STATUSES))
    .order_by(_TURNS.c.position)
    .limit(1)
)


def head_open_turn(session: Session, agent_id: str) -> Turn | None:
    """The agent's lowest-position open turn: the only one that may run."""
    row = _HEAD_OPEN_TURN.execute(session, {"agent_id": agent_id}).first_mapping()
    return None if row is None else Turn(**row)


def load_decisions(session: Session, turn_id: str) -> dict[str, str | None]:
    rows = session.exec(select(Approval).where(Approval.turn_id == turn_id))
    return {row.tool_call_id: row.decision for row in rows}


def session_grants(session: Session, session_id: str) -> set[str]:
    rows = session.exec(select(SessionGrant.tool).where(SessionGrant.session_id == session_id))
    return set(rows)


def add_approval_requests(session: Session, requests: list[Approval]) -> None:
    """Insert requests; a tool the session granted meanwhile is decided at once."""
    if not requests:
        return
    grants = session_grants(session, requests[0].session_id)
    for request in requests:
        if request.tool in grants:
            request.decision, request.decided_at = "allow_session", utcnow()
        session.add(request)


def lock_turn(session: Session, turn_id: str) -> Turn:
    turn = session.exec(select(Turn).where(Turn.id == turn_id).with_for_update()).first()
    if turn is None:
        raise TurnNotFound(f"turn {turn_id!r} does not exist")
    return turn


def pending_count(session: Session, turn_id: str) -> int:
    return session.exec(
        select(func.count()).where(Approval.turn_id == turn_id, col(Approval.decision).is_(None))
    ).one()


def decide(session: Session, agent_id: str, tool_call_id: str, decision: str) -> list[str]:
    """Record a decision; returns the agents whose turns it re-queued (to kick).

    Raises ApprovalNotFound, TurnCancelled (its turn's cancel came first: nothing
    runs) or ApprovalAlreadyDecided (the loser of a race).
    """
    approval = session.get(Approval, (agent_id, tool_call_id))
    if approval is None:
        raise ApprovalNotFound(f"agent {agent_id} has no approval request {tool_call_id!r}")
    # The turn's row lock orders this decision against a cancel of the turn.
    if lock_turn(session, approval.turn_id).cancel_requested:
        raise TurnCancelled(f"the turn of tool call {tool_call_id} was cancelled")
    session.refresh(approval)
    if approval.decision is not None:
        raise ApprovalAlreadyDecided(f"tool call {tool_call_id} was already decided")
    decided = [approval]
    if decision == "allow_session":
        if session.get(SessionGrant, (approval.session_id, approval.tool)) is None:
            session.add(SessionGrant(session_id=approval.session_id, tool=approval.tool))
        decided += _pending_for_tool(session, approval)
    now = utcnow()
    for row in decided:
        row.decision, row.decided_at = decision, now
        session.add(row)
    session.flush()
    kicked = []
    for turn_id in sorted({row.turn_id for row in decided}):  # one lock order for every decider
        turn = lock_turn(session, turn_id)
        if turn.status == "awaiting_approval" and pending_count(session, turn_id) == 0:
            turn.status = "queued"
            session.add(turn)
            kicked.append(turn.agent_id)
    return kicked


def _pending_for_tool(session: Session, approval: Approval) -> list[Approval]:
    """The session's other undecided requests for the approval's tool, of turns not cancelled."""
    return list(
        session.exec(
            select(Approval)
            .join(Turn, col(Turn.id) == Approval.turn_id)
            .where(
                Approval.session_id == approval.session_id,
                Approval.tool == approval.tool,
                col(Approval.decision).is_(None),
                Approval.tool_call_id != approval.tool_call_id,
                col(Turn.cancel_requested).is_(False),
            )
        )
    )


def pending_approvals(
    session: Session, session_id: str, after: str | None, limit: int
) -> list[Approval]:
    query = select(Approval).where(
        Approval.session_id == session_id, col(Approval.decision).is_(None)
    )
    if after:
        query = query.where(Approval.tool_call_id > after)
    return list(session.exec(query.order_by(Approval.tool_call_id).limit(limit)))


def expired_running_turns(session: Session, now: float) -> list[Turn]:
    """Running turns whose agent's lease expired: their attempt was lost."""
    return list(
        session.exec(
            select(Turn)
            .join(Thread, col(Thread.id) == Turn.agent_id)
            .where(
                Turn.status == "running",
                (col(Thread.lease_holder).is_(None)) | (Thread.lease_expires_at < now),
            )
        )
    )


def agents_needing_kick(session: Session, now: float, limit: int = 1000) -> list[str]:
    """Agents with a queued turn and no live lease (their kick may have been lost)."""
    rows = session.exec(
        select(Turn.agent_id)
        .join(Thread, col(Thread.id) == Turn.agent_id)
        .where(
            Turn.status == "queued",
            (col(Thread.lease_holder).is_(None)) | (Thread.lease_expires_at < now),
        )
        .distinct()
        .limit(limit)
    )
    return list(rows)
