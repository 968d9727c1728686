"""Tool calls waiting for a decision, and the decisions."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import DbDep, KickerDep, PageDep
from api.schemas import ApprovalList, ApprovalOut, DecisionAccepted, DecisionIn
from shared.approvals import decide, pending_approvals
from shared.models import Approval
from shared.sessions import get_chat_session

router = APIRouter(tags=["approvals"])


def _pending(session: Session, session_id: str, after: str | None, limit: int) -> list[Approval]:
    get_chat_session(session, session_id)
    return pending_approvals(session, session_id, after, limit)


@router.get("/sessions/{session_id}/approvals", summary="List pending tool approvals")
async def list_pending(session_id: str, db: DbDep, page: PageDep) -> ApprovalList:
    """The session's tool calls that wait for a decision (policy ``ask``), of every agent.

    404 ``session_not_found`` for an unknown session.
    """
    rows = await db.read(_pending, session_id, page.cursor, page.fetch)
    rows, next_cursor = page.cut(rows, lambda row: row.tool_call_id)
    return ApprovalList(approvals=[ApprovalOut.of(row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/agents/{agent_id}/approvals/{tool_call_id}", status_code=202, summary="Decide a tool call"
)
async def decide_call(
    agent_id: str, tool_call_id: str, body: DecisionIn, db: DbDep, kicker: KickerDep
) -> DecisionAccepted:
    """Decide a pending call; the turn continues once no call of its batch is pending.

    ``allow_session`` grants the tool to every agent of the session and allows
    its other pending requests for it; ``deny`` gives the call a ``denied`` result.
    A second decision answers 409 ``approval_already_decided``, a decision on a call
    whose turn was cancelled 409 ``turn_cancelled`` (nothing runs), an unknown call
    404 ``approval_not_found``.
    """
    requeued = await db.run(decide, agent_id, tool_call_id, body.decision)
    await kicker.kick(*requeued)
    return DecisionAccepted(agent_id=agent_id, tool_call_id=tool_call_id, decision=body.decision)
