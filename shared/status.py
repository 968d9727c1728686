"""A turn's status, and the transitions between statuses: the one table of the lifecycle.

    queued             -> running | failed (its start failed) | cancelled
    running            -> awaiting_approval | queued (its attempt lost, or handed
                          back at shutdown) | completed | failed | cancelled
    awaiting_approval  -> queued (decided) | cancelled
    completed, failed, cancelled: final

A status change through SQL is conditioned on the statuses it may leave
(``predecessors``), so a change the table does not allow never commits; a
change of a loaded row goes through ``transition``.
"""

from __future__ import annotations

import time
from enum import StrEnum


class TurnStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


Q, R, A = TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.AWAITING_APPROVAL
TRANSITIONS: dict[TurnStatus, frozenset[TurnStatus]] = {
    Q: frozenset({R, TurnStatus.FAILED, TurnStatus.CANCELLED}),
    R: frozenset({A, Q, TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED}),
    A: frozenset({Q, TurnStatus.CANCELLED}),
    TurnStatus.COMPLETED: frozenset(),
    TurnStatus.FAILED: frozenset(),
    TurnStatus.CANCELLED: frozenset(),
}
OPEN = frozenset(s for s, nexts in TRANSITIONS.items() if nexts)
FINISHED = frozenset(TurnStatus) - OPEN
IN_PROGRESS = OPEN - {TurnStatus.QUEUED}  # its agent shows it as its status


def predecessors(status: TurnStatus) -> tuple[TurnStatus, ...]:
    """The statuses a turn may move to ``status`` from (sorted: a stable SQL ``IN`` list)."""
    return tuple(sorted(s for s, nexts in TRANSITIONS.items() if status in nexts))


def runnable(
    status: str, not_before: float | None, cancel_requested: bool, now: float | None = None
) -> bool:
    """Whether an agent's open head turn can run now: queued, and due if it was parked (a
    head that awaits approval, or waits for its provider, its limits or its budget, blocks
    its agent), or flagged for cancel in any state (running it ends it cancelled at once).
    Every query that decides whether to run an agent's head asks this."""
    if cancel_requested:
        return True
    due = not_before is None or not_before <= (time.time() if now is None else now)
    return status == TurnStatus.QUEUED and due


class IllegalTransition(AssertionError):
    """A programming error: the lifecycle does not allow this change."""


def transition(current: str, new: TurnStatus) -> TurnStatus:
    """``new``, when the table allows moving there from ``current``."""
    if new not in TRANSITIONS[TurnStatus(current)]:
        raise IllegalTransition(f"a turn cannot go from {current} to {new}")
    return new
