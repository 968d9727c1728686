"""Messages become queued turns; turns are read (with a long poll), listed and cancelled."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sqlmodel import Session

from api.auth import PendingKeyDep
from api.deps import DbDep, KickerDep, PageDep, ResourcesDep, StateDep
from api.schemas import MAX_NAME_CHARS, MAX_WAIT_S, MessageIn, TurnAccepted, TurnList, TurnOut
from shared.cancel import cancel_turn
from shared.models import Turn
from shared.status import TurnStatus
from shared.turns import enqueue_turn, get_turn, list_turns

router = APIRouter(tags=["turns"])
POLL_S = 0.1
WAITING_STATUSES = (TurnStatus.QUEUED, TurnStatus.RUNNING)


@router.post("/agents/{agent_id}/messages", status_code=202, summary="Send a message")
async def send_message(
    agent_id: str,
    body: MessageIn,
    resources: ResourcesDep,
    kicker: KickerDep,
    key: PendingKeyDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_NAME_CHARS)
    ] = None,
) -> TurnAccepted:
    """Queue the message as the agent's next turn (FIFO behind its other turns); it is
    durable once this answers 202.

    The same ``Idempotency-Key`` and body within 24 h answer the original turn;
    the key with another body answers 409 ``idempotency_key_reused``. 429
    ``agent_queue_full`` past ``BOBBIN_MAX_QUEUED_TURNS`` queued turns; 404
    ``agent_not_found`` for an unknown agent.
    """

    def enqueue(session: Session) -> Turn:
        key.verify(session)  # first, in the same transaction: a bad key stores nothing
        turn, _ = enqueue_turn(
            session,
            agent_id,
            body.content,
            max_queued=resources.settings.max_queued_turns,
            idempotency_key=idempotency_key,
        )
        return turn

    # One transaction and one executor hop: the key is verified inside it (api/auth.py).
    turn = await resources.db.run(enqueue)
    # Only after the commit: that order is what lets kicks be de-duplicated (shared/queue.py).
    # A retry kicks again: harmless, and it heals a lost kick.
    await kicker.kick(agent_id)
    return TurnAccepted(turn=TurnOut.of(turn))


@router.get("/turns/{turn_id}", summary="Get a turn")
async def get(
    turn_id: str, db: DbDep, wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
) -> TurnOut:
    """A turn: its status, output, usage and, on failure, its error.

    With ``wait_s`` (up to 30) the call waits while the turn is queued or running and
    answers as soon as it leaves those states. 404 ``turn_not_found`` for an unknown id.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    turn = await db.read(get_turn, turn_id)
    while turn.status in WAITING_STATUSES and loop.time() < deadline:
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
        turn = await db.read(get_turn, turn_id)
    return TurnOut.of(turn)


@router.get("/agents/{agent_id}/turns", summary="List an agent's turns")
async def list_all(agent_id: str, db: DbDep, page: PageDep) -> TurnList:
    """The agent's turns, newest first.

    404 ``agent_not_found`` for an unknown agent.
    """
    rows = await db.read(list_turns, agent_id, page.int_cursor(), page.fetch)
    rows, next_cursor = page.cut(rows, lambda turn: turn.position)
    return TurnList(turns=[TurnOut.of(turn) for turn in rows], next_cursor=next_cursor)


@router.post("/turns/{turn_id}/cancel", status_code=202, summary="Cancel a turn")
async def cancel(turn_id: str, state: StateDep, kicker: KickerDep) -> TurnAccepted:
    """Cancel a turn; a queued or awaiting one at once, a running one within a second.

    202 is a promise: the turn ends ``cancelled`` (its streamed text kept, its
    open tool calls aborted). 409 ``turn_not_cancellable`` once it has finished;
    404 ``turn_not_found`` for an unknown id.
    """
    res = state.resources
    if runnable := await cancel_turn(res.db, res.redis, res.sink, turn_id, state.holder):
        await kicker.kick(runnable)
    return TurnAccepted(turn=TurnOut.of(await res.db.read(get_turn, turn_id)))
