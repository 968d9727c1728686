"""What an agent writes during a turn: its events, its suspension, hand-back and ending.

All of it goes through the lease holder's ``ThreadWriter`` (fenced appends,
``shared.threads``); the turn-ending rules are ``shared.endings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from sqlmodel import Session

from shared.agents.calls import TurnMustWait
from shared.agents.context import AgentContext
from shared.approvals import add_approval_requests, load_decisions, pending_count
from shared.db import Database
from shared.endings import Ending
from shared.events import Envelope, NewEvent, StoredEvent
from shared.models import Approval
from shared.status import TurnStatus
from shared.threads import ThreadWriter, requeue_turn, start_turn, update_turn
from shared.turns import lock_turn


class AgentRecorder:
    """Everything an agent writes during a turn, through its lease holder's writer.

    Every event it appends joins ``context.events``, so the agent's view of its
    thread stays whole without reading it again.
    """

    def __init__(self, db: Database, writer: ThreadWriter, context: AgentContext) -> None:
        self._db = db
        self._writer = writer
        self.context = context

    @property
    def holder(self) -> str:
        """Who holds the lease: the worker running this turn."""
        return self._writer.lease.holder

    async def append(
        self,
        turn_id: str,
        events: Sequence[NewEvent],
        *,
        turn_changes: dict[str, Any] | None = None,
        approvals: list[Approval] | None = None,
    ) -> list[StoredEvent]:
        also = (lambda s: add_approval_requests(s, approvals)) if approvals else None
        rows = await self._writer.append(turn_id, events, turn_changes=turn_changes, also=also)
        self.context.events.extend(rows)
        return rows

    async def start(
        self, turn_id: str, events: Sequence[NewEvent], changes: dict[str, Any]
    ) -> None:
        """Set the turn running, with its opening ``events``; raises TurnCancelled (and
        writes nothing) when its cancel was accepted first."""
        rows = await self._writer.append(
            turn_id, events, also=lambda session: start_turn(session, turn_id, changes)
        )
        self.context.events.extend(rows)

    async def end_turn(
        self, turn_id: str, ending: Ending, turn_events: Sequence[StoredEvent] | None = None
    ) -> str:
        """Commit the turn's ending and release the lease; returns the status recorded.
        (``turn_events``: as ``ThreadWriter.end_turn`` takes them.)"""
        rows, recorded = await self._writer.end_turn(turn_id, ending, turn_events)
        self.context.events.extend(rows)
        return recorded.status

    def publish(self, envelope: Envelope) -> None:
        self._writer.publish(envelope)

    async def decisions(self, turn_id: str) -> dict[str, str | None]:
        return await self._db.read(load_decisions, turn_id)

    async def suspend(self, turn_id: str, running_s: float, usage: dict[str, int]) -> Suspension:
        """Park the turn awaiting approval and release the lease, unless every call is
        decided already, or the turn's cancel was accepted (it must end cancelled)."""
        return await self._writer.transact(_suspend, turn_id, running_s, usage)

    async def park(
        self,
        turn_id: str,
        wait: TurnMustWait,
        running_s: float,
        usage: dict[str, Any],
        provider_attempts: int,
    ) -> bool:
        """Hand the turn back to the queue until ``wait.due`` and release the lease; False
        (nothing changed) when the turn's cancel was accepted: it must end cancelled."""
        changes = {
            "running_s": running_s,
            "usage": usage,
            "provider_attempts": provider_attempts,
            "not_before": wait.due,
            "waiting": {"reason": wait.reason, "until": wait.until, "booking": wait.booking},
        }
        return await self._writer.transact(_hand_back, turn_id, changes)

    async def requeue(self, turn_id: str, running_s: float, usage: dict[str, Any]) -> bool:
        """Hand the turn back to the queue (worker shutdown) and release the lease; False
        (nothing changed) when the turn's cancel was accepted: it must end cancelled."""
        changes = {"running_s": running_s, "usage": usage}
        return await self._writer.transact(_hand_back, turn_id, changes)


class Suspension(Enum):
    SUSPENDED = "suspended"
    DECIDED = "decided"  # every decision is in: go on
    CANCELLED = "cancelled"


def _suspend(
    session: Session, writer: ThreadWriter, turn_id: str, running_s: float, usage: dict[str, int]
) -> Suspension:
    turn = lock_turn(session, turn_id)
    if turn.cancel_requested:
        return Suspension.CANCELLED
    if pending_count(session, turn_id) == 0:
        return Suspension.DECIDED
    update_turn(
        session,
        turn_id,
        {"status": TurnStatus.AWAITING_APPROVAL, "running_s": running_s, "usage": usage},
    )
    writer.release_in(session)
    return Suspension.SUSPENDED


def _hand_back(
    session: Session, writer: ThreadWriter, turn_id: str, changes: dict[str, Any]
) -> bool:
    if not requeue_turn(session, turn_id, changes):
        return False
    writer.release_in(session)
    return True
