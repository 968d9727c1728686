"""Cancelling a turn, whatever state it is in (docs/architecture.md, "The lifecycle of a turn").

An accepted cancel is a promise: the turn ends ``cancelled``. It is recorded
under the turn's row lock, the lock a decision and every turn-ending
transaction take, so each of them either comes before it (the cancel of a
finished turn answers 409) or sees it: a decision answers 409
``turn_cancelled`` and runs nothing, an ending holder ends the turn cancelled.

queued and never started: cancelled on its row, no events (it never entered
the conversation). running: flagged, and announced on Redis; the lease holder
stops it within a second (within a lease renewal while Redis is away). Started
but parked (awaiting_approval, or queued between attempts): flagged, and the
API takes the agent's lease and ends it itself; when another holds the lease,
the flagged turn is the agent's runnable head (``shared.status.runnable``), so
the agent's next claim ends it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlmodel import Session

from shared.db import Database
from shared.endings import Ending
from shared.errors import LeaseLost, TurnNotCancellable, TurnNotOpen
from shared.keys import cancel_channel
from shared.leases import acquire_lease, release_lease
from shared.models import Turn, utcnow
from shared.sink import EventSink
from shared.status import OPEN, TurnStatus, transition
from shared.threads import ThreadWriter
from shared.turns import lock_turn

log = logging.getLogger(__name__)
Action = Literal["done", "signal", "lease"]
LEASE_ATTEMPTS = 20
# A cancel is recorded in the database; the announcement only makes it quick. While
# Redis is away, the holder reads the flag at its next lease renewal instead.
ANNOUNCE_TIMEOUT_S = 0.5


def _mark_cancel(session: Session, turn_id: str) -> Action:
    turn = lock_turn(session, turn_id)
    if turn.status not in OPEN:
        raise TurnNotCancellable(f"turn {turn_id} already ended {turn.status}")
    if turn.status == TurnStatus.QUEUED and turn.started_at is None:
        turn.status = transition(turn.status, TurnStatus.CANCELLED)
        turn.finished_at, turn.cancel_requested = utcnow(), True
        session.add(turn)
        return "done"
    turn.cancel_requested = True
    session.add(turn)
    return "signal" if turn.status == TurnStatus.RUNNING else "lease"


async def cancel_turn(
    db: Database, redis: aioredis.Redis, sink: EventSink, turn_id: str, holder: str
) -> str | None:
    """Cancel the turn; returns its agent when that may have a turn to run now (kick it).

    Raises TurnNotFound or TurnNotCancellable.
    """
    action = await db.run(_mark_cancel, turn_id)
    if action == "signal":
        await _announce(redis, turn_id)
    elif action == "lease":
        return await _cancel_parked(db, redis, sink, turn_id, holder)
    return None


async def _announce(redis: aioredis.Redis, turn_id: str) -> None:
    try:
        async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
            await redis.publish(cancel_channel(), turn_id)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("cancel of %s not announced (%s); the holder will read the flag", turn_id, exc)


async def _cancel_parked(
    db: Database, redis: aioredis.Redis, sink: EventSink, turn_id: str, holder: str
) -> str | None:
    turn = await db.read(lambda s: s.get(Turn, turn_id))
    assert turn is not None
    for _ in range(LEASE_ATTEMPTS):
        lease = await db.run(acquire_lease, turn.agent_id, holder, 10.0)
        if lease is not None:
            break
        await asyncio.sleep(0.05)
    else:
        # Another holds the agent: the flagged turn is its runnable head, so whoever
        # claims the agent next (the holder's own hold-over, a kick, the sweeper once a
        # dead holder's lease lapses) ends it cancelled. Kick, in case the holder is done.
        await _announce(redis, turn_id)
        return turn.agent_id
    writer = ThreadWriter(db, lease, sink)
    try:
        await writer.end_turn(turn_id, Ending.cancelled())  # its calls read in the transaction
    except (TurnNotOpen, LeaseLost):  # it ended meanwhile, or the next holder ends it
        await db.run(release_lease, lease)
        return turn.agent_id
    # The parked turn blocked the agent: the turns queued behind it may run now.
    return turn.agent_id if writer.runnable_after_release else None
