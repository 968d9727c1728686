"""Approval requests and decisions (docs/architecture.md, "The lifecycle of a turn").

A request is a row unique on ``(agent_id, tool_call_id)``, written with its
``tool_call`` event; a decision is written under the turn's row lock, the
lock a cancel takes, so a decision after the turn's cancel answers 409
``turn_cancelled``; the decision that leaves nothing pending re-queues the
turn. ``allow_session`` grants the tool to the session and decides its other
pending requests for it.
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from shared.errors import ApprovalAlreadyDecided, ApprovalNotFound, TurnCancelled
from shared.models import Approval, SessionGrant, Turn, utcnow
from shared.status import TurnStatus, transition
from shared.turns import lock_turn


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
    granting = decision == "allow_session"
    candidates = _pending_for_tool(session, approval) if granting else []
    # Every turn the decision may touch, locked in one order for every decider: a cancel
    # and any other decision of these turns take the same locks, so what is read below,
    # under them, stays true until this commits.
    turns = {
        turn_id: lock_turn(session, turn_id)
        for turn_id in sorted({approval.turn_id, *(row.turn_id for row in candidates)})
    }
    if turns[approval.turn_id].cancel_requested:
        raise TurnCancelled(f"the turn of tool call {tool_call_id} was cancelled")
    session.refresh(approval)
    if approval.decision is not None:
        raise ApprovalAlreadyDecided(f"tool call {tool_call_id} was already decided")
    decided = [approval]
    if granting:
        if session.get(SessionGrant, (approval.session_id, approval.tool)) is None:
            session.add(SessionGrant(session_id=approval.session_id, tool=approval.tool))
        # Read again under the locks: another decider may have decided some meanwhile.
        decided += [r for r in _pending_for_tool(session, approval) if r.turn_id in turns]
    now = utcnow()
    for row in decided:
        row.decision, row.decided_at = decision, now
        session.add(row)
    session.flush()
    kicked = []
    for turn_id in sorted({row.turn_id for row in decided}):
        turn = turns[turn_id]
        if turn.status == TurnStatus.AWAITING_APPROVAL and pending_count(session, turn_id) == 0:
            turn.status = transition(turn.status, TurnStatus.QUEUED)
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
