"""An agent's lease on its thread, and the fence every append goes through.

The lease lives on the thread row. Taking it increments ``lease_token``;
every append allocates its seq with an UPDATE conditioned on that token in
the append's own transaction, so a stale holder's write fails with LeaseLost
instead of interleaving with the new holder's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import or_, update
from sqlmodel import Session, col

from shared.errors import LeaseLost
from shared.models import Thread


@dataclass
class Lease:
    thread_id: str
    session_id: str
    token: int
    holder: str
    seq: int
    published_seq: int


def acquire_lease(session: Session, thread_id: str, holder: str, lease_s: float) -> Lease | None:
    """Take the lease if it is free or expired; None when someone else holds it."""
    now = time.time()
    row = (
        session.connection()
        .execute(
            update(Thread)
            .where(
                col(Thread.id) == thread_id,
                or_(col(Thread.lease_holder).is_(None), col(Thread.lease_expires_at) < now),
            )
            .values(
                lease_token=col(Thread.lease_token) + 1,
                lease_holder=holder,
                lease_expires_at=now + lease_s,
            )
            .returning(
                col(Thread.lease_token),
                col(Thread.session_id),
                col(Thread.seq),
                col(Thread.published_seq),
            )
        )
        .first()
    )
    if row is None:
        return None
    return Lease(thread_id, row.session_id, row.lease_token, holder, row.seq, row.published_seq)


def renew_lease(session: Session, lease: Lease, lease_s: float) -> None:
    """Extend the lease; raises LeaseLost when the token moved on or it was released."""
    result = session.connection().execute(
        update(Thread)
        .where(
            col(Thread.id) == lease.thread_id,
            col(Thread.lease_token) == lease.token,
            col(Thread.lease_holder).is_not(None),
        )
        .values(lease_expires_at=time.time() + lease_s)
    )
    if result.rowcount != 1:
        raise LeaseLost(f"the lease on {lease.thread_id} was taken over")


def release_lease(session: Session, lease: Lease, published_seq: int | None = None) -> None:
    """Give the lease up (a no-op when it was already lost)."""
    values: dict[str, object] = {"lease_holder": None, "lease_expires_at": 0.0}
    if published_seq is not None:
        values["published_seq"] = published_seq
    session.connection().execute(
        update(Thread)
        .where(col(Thread.id) == lease.thread_id, col(Thread.lease_token) == lease.token)
        .values(**values)
    )


def fence_seqs(session: Session, lease: Lease, count: int, published_seq: int) -> int:
    """Allocate ``count`` seqs under the lease; returns the last. Raises LeaseLost."""
    row = (
        session.connection()
        .execute(
            update(Thread)
            .where(
                col(Thread.id) == lease.thread_id,
                col(Thread.lease_token) == lease.token,
                col(Thread.lease_holder).is_not(None),
            )
            .values(seq=col(Thread.seq) + count, published_seq=published_seq)
            .returning(col(Thread.seq))
        )
        .first()
    )
    if row is None:
        raise LeaseLost(f"the lease on {lease.thread_id} was lost; the write was refused")
    return int(row.seq)
