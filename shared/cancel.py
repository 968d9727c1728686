"""Cancelling a turn, whatever state it is in (ARCHITECTURE section 2, Cancel).

queued and never started: cancelled on its row, no events (it never entered
the conversation). running: flagged on its row and announced on Redis; the
lease holder stops it within a second and writes the bookkeeping. Started but
parked (awaiting_approval, or queued between attempts): the API takes the
agent's lease and writes the aborted results and ``turn_cancelled`` itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlmodel import Session, col, select

from shared.db import Database
from shared.errors import TurnNotCancellable
from shared.events import NewEvent
from shared.keys import cancel_channel
from shared.leases import acquire_lease, release_lease
from shared.models import Approval, ThreadEvent, Turn, utcnow
from shared.sink import EventSink
from shared.threads import ThreadWriter
from shared.turns import lock_turn, turn_changes_for_end

log = logging.getLogger(__name__)
Action = Literal["done", "signal", "lease"]
LEASE_ATTEMPTS = 20


def _mark_cancel(session: Session, turn_id: str) -> Action:
    turn = lock_turn(session, turn_id)
    if turn.status == "queued" and turn.started_at is None:
        turn.status, turn.finished_at = "cancelled", utcnow()
        session.add(turn)
        return "done"
    if turn.status == "running":
        turn.cancel_requested = True
        session.add(turn)
        return "signal"
    if turn.status in ("queued", "awaiting_approval"):  # started, parked between attempts
        return "lease"
    raise TurnNotCancellable(f"turn {turn_id} already ended {turn.status}")


async def cancel_turn(
    db: Database, redis: aioredis.Redis, sink: EventSink, turn_id: str, holder: str
) -> None:
    """Raises TurnNotFound or TurnNotCancellable."""
    action = await db.run(_mark_cancel, turn_id)
    if action == "signal":
        await _announce(redis, turn_id)
    elif action == "lease":
        await _cancel_awaiting(db, redis, sink, turn_id, holder)


async def _announce(redis: aioredis.Redis, turn_id: str) -> None:
    try:
        await redis.publish(cancel_channel(), turn_id)
    except (RedisError, OSError) as exc:  # the worker's lease renewal reads the flag
        log.warning("cancel of %s not announced (%s); the worker will see the flag", turn_id, exc)


async def _cancel_awaiting(
    db: Database, redis: aioredis.Redis, sink: EventSink, turn_id: str, holder: str
) -> None:
    turn = await db.read(lambda s: s.get(Turn, turn_id))
    assert turn is not None
    for _ in range(LEASE_ATTEMPTS):
        lease = await db.run(acquire_lease, turn.agent_id, holder, 10.0)
        if lease is not None:
            break
        await asyncio.sleep(0.05)
    else:  # a worker holds the agent: it will find the flag when it runs the turn
        await db.run(_flag, turn_id)
        await _announce(redis, turn_id)
        return
    writer = ThreadWriter(db, lease, sink)
    try:
        events = await db.read(_closing_events, turn_id)
        if events is None:  # it moved on while we took the lease
            await db.run(_flag, turn_id)
            return
        await writer.append(
            turn_id,
            events,
            turn_changes=turn_changes_for_end("cancelled", cancel_requested=True),
            also=lambda s: _drop_requests(s, turn_id),
            release=True,
        )
    finally:
        await db.run(release_lease, lease)


def _flag(session: Session, turn_id: str) -> None:
    session.connection().execute(
        update(Turn).where(col(Turn.id) == turn_id).values(cancel_requested=True)
    )


def _closing_events(session: Session, turn_id: str) -> list[NewEvent] | None:
    turn = session.get(Turn, turn_id)
    if turn is None or turn.status not in ("queued", "awaiting_approval"):
        return None
    events = list(session.exec(select(ThreadEvent).where(ThreadEvent.turn_id == turn_id)))
    done = {e.data["tool_call_id"] for e in events if e.type == "tool_result"}
    closing = [
        NewEvent.of(
            "tool_result",
            tool_call_id=e.data["tool_call_id"],
            status="aborted",
            content="The turn was cancelled before this call ran.",
        )
        for e in events
        if e.type == "tool_call" and e.data["tool_call_id"] not in done
    ]
    closing.append(NewEvent.of("turn_cancelled", reason="cancelled by the user"))
    return closing


def _drop_requests(session: Session, turn_id: str) -> None:
    session.connection().execute(
        update(Approval)
        .where(col(Approval.turn_id) == turn_id, col(Approval.decision).is_(None))
        .values(decision="cancelled", decided_at=utcnow())
    )
