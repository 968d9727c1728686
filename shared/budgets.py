"""Budgets of projects and sessions: every model call's worst case reserved before it runs.

A budget is ``{"max_cost_usd": "<decimal>", "window": "total" | "day" | "month"}``
(UTC calendar periods) on a project or a session. Before a model call, its
worst-case cost (the input estimate plus its ``max_tokens`` at the model's
prices) is reserved against both the session's and the project's budget in
one transaction, each by one conditional UPDATE that succeeds only while
spent + reserved + it stays within the budget; so no number of concurrent
workers overruns a budget by more than the estimate's error. When settled
spend alone would pass the budget the turn fails ``budget_exceeded``; when
only other calls' open reservations stand in the way it waits. The
transaction that records the call's usage settles the reservation; a
reservation its worker never settled (the worker died) is released by the
sweeper once it expires.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from shared.errors import BudgetExceeded
from shared.models import BudgetHold, BudgetSpend, ChatSession, Project, table
from shared.pricing import nanos_of, usd

WINDOWS = ("total", "day", "month")
_SPEND, _HOLDS = table(BudgetSpend), table(BudgetHold)
_RESERVE = (
    update(_SPEND)
    .where(
        _SPEND.c.scope_id == bindparam("scope"),
        _SPEND.c.period == bindparam("at_period"),
        _SPEND.c.spent_nanos + _SPEND.c.reserved_nanos + bindparam("nanos") <= bindparam("limit"),
    )
    .values(reserved_nanos=_SPEND.c.reserved_nanos + bindparam("nanos"))
)


def period_of(window: str, moment: datetime | None = None) -> str:
    """The period a window's spend is kept under: ``total``, ``2026-12-04`` or ``2026-12``."""
    moment = moment or datetime.now(UTC)
    if window == "day":
        return moment.strftime("%Y-%m-%d")
    if window == "month":
        return moment.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True)
class Budget:
    scope_id: str  # a project's or a session's id
    limit_nanos: int
    window: str

    @classmethod
    def of(cls, scope_id: str, budget: dict[str, Any] | None) -> Budget | None:
        if not budget:
            return None
        return cls(scope_id, nanos_of(str(budget["max_cost_usd"])), budget.get("window", "total"))


def budgets_of(session: Session, session_id: str) -> list[Budget]:
    """The budgets a session's calls count against: its own and its project's."""
    row = session.execute(
        select(ChatSession.budget, Project.id, Project.budget)  # type: ignore[call-overload]
        .join(Project, Project.id == ChatSession.project_id)
        .where(ChatSession.id == session_id)
    ).first()
    if row is None:
        return []
    session_budget, project_id, project_budget = row
    found = [Budget.of(session_id, session_budget), Budget.of(project_id, project_budget)]
    return [b for b in found if b is not None]


@dataclass(frozen=True)
class Reservation:
    hold_id: str
    nanos: int


class Blocked(Exception):
    """Other calls' open reservations leave no room now; settled spend would."""


def reserve(
    session: Session, budgets: list[Budget], nanos: int, turn_id: str, hold_s: float
) -> Reservation:
    """Reserve ``nanos`` against every budget; raises BudgetExceeded or Blocked (and then
    reserves nothing: the transaction is rolled back by the raise)."""
    hold_id = "hold_" + secrets.token_hex(8)
    expires_at = time.time() + hold_s
    for budget in sorted(budgets, key=lambda b: b.scope_id):  # the lock order of _change_spend
        period = period_of(budget.window)
        _ensure_row(session, budget.scope_id, period)
        params = {"scope": budget.scope_id, "at_period": period, "nanos": nanos}
        taken = session.connection().execute(_RESERVE, params | {"limit": budget.limit_nanos})
        if taken.rowcount != 1:
            spent = _spent(session, budget.scope_id, period)
            if spent + nanos > budget.limit_nanos:
                raise BudgetExceeded(
                    f"this call could cost up to ${usd(nanos)}, and {budget.scope_id} has spent "
                    f"${usd(spent)} of its ${usd(budget.limit_nanos)} {budget.window} budget"
                )
            raise Blocked
        session.add(
            BudgetHold(
                id=hold_id,
                scope_id=budget.scope_id,
                period=period,
                nanos=nanos,
                turn_id=turn_id,
                expires_at=expires_at,
            )
        )
    return Reservation(hold_id, nanos)


def settle(session: Session, reservation: Reservation, spent_nanos: int) -> None:
    """Replace the reservation by what the call really cost (a reservation the sweeper
    released meanwhile is only spent)."""
    mine = select(_HOLDS).where(_HOLDS.c.id == reservation.hold_id)
    holds = session.execute(mine.order_by(_HOLDS.c.scope_id)).all()  # release_holds' order
    changes = {
        (hold.scope_id, hold.period): (hold.nanos if _delete(session, hold) else 0, spent_nanos)
        for hold in holds
    }
    _change_spend(session, changes)


def expired_holds(session: Session, now: float) -> list[Any]:
    """The reservations whose workers never settled them."""
    return list(session.execute(select(_HOLDS).where(_HOLDS.c.expires_at < now)).all())


def release_holds(session: Session, expired: list[Any]) -> int:
    """Release ``expired`` reservations (as ``expired_holds`` read them) that are still
    held (their worker may have settled one since); returns how many it released."""
    gone = [
        hold for hold in sorted(expired, key=lambda h: (h.id, h.scope_id)) if _delete(session, hold)
    ]
    released: dict[tuple[str, str], tuple[int, int]] = {}
    for hold in gone:
        held, _ = released.get((hold.scope_id, hold.period), (0, 0))
        released[(hold.scope_id, hold.period)] = (held + hold.nanos, 0)
    _change_spend(session, released)
    return len(gone)


def _delete(session: Session, hold: Any) -> bool:
    gone = session.connection().execute(
        delete(_HOLDS).where(_HOLDS.c.id == hold.id, _HOLDS.c.scope_id == hold.scope_id)
    )
    return gone.rowcount == 1


def _change_spend(session: Session, changes: dict[tuple[str, str], tuple[int, int]]) -> None:
    """Move (released, spent) nanos of each (scope, period) from reserved to spent.

    Every transaction that changes spend rows (``reserve`` too) takes their locks
    after its hold rows' and in (scope, period) order: two can never deadlock.
    """
    for (scope_id, period), (released, spent) in sorted(changes.items()):
        session.connection().execute(
            update(_SPEND)
            .where(_SPEND.c.scope_id == scope_id, _SPEND.c.period == period)
            .values(
                reserved_nanos=_SPEND.c.reserved_nanos - released,
                spent_nanos=_SPEND.c.spent_nanos + spent,
            )
        )


def spent_usd(session: Session, scope_id: str, budget: dict[str, Any] | None) -> str | None:
    """What the scope spent in its budget's current period (None without a budget)."""
    if not budget:
        return None
    return usd(_spent(session, scope_id, period_of(budget.get("window", "total"))))


def _spent(session: Session, scope_id: str, period: str) -> int:
    value = session.execute(
        select(_SPEND.c.spent_nanos).where(_SPEND.c.scope_id == scope_id, _SPEND.c.period == period)
    ).scalar()
    return int(value or 0)


def _ensure_row(session: Session, scope_id: str, period: str) -> None:
    dialect = session.connection().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    row = {"scope_id": scope_id, "period": period, "spent_nanos": 0, "reserved_nanos": 0}
    session.connection().execute(insert(_SPEND).values(row).on_conflict_do_nothing())
