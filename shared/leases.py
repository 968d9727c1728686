"""An agent's lease on its thread, and the fence every append goes through.

The lease lives on the thread row. Taking it increments ``lease_token``;
every append allocates its seq with an UPDATE conditioned on that token in
the append's own transaction, so a stale holder's write fails with LeaseLost
instead of interleaving with the new holder's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, update
from sqlmodel import Session

from shared.errors import LeaseLost
from shared.models import Thread, table
from shared.sql import Prepared


@dataclass
class Lease:
    thread_id: str
    session_id: str
    token: int
    holder: str
    seq: int
    published_seq: int
    # Until when (time.monotonic) no one else can have taken it: the holder's own
    # clock, so a holder that was paused past it knows without asking the database.
    valid_until: float = 0.0

    def is_current(self) -> bool:
        return time.monotonic() < self.valid_until


# Built once: every turn runs each of these, and building costs more than running.
_THREADS = table(Thread)
_HELD = (_THREADS.c.id == bindparam("thread_id")) & (_THREADS.c.lease_token == bindparam("token"))
_ACQUIRE = Prepared(
    update(_THREADS)
    .where(
        _THREADS.c.id == bindparam("thread_id"),
        or_(_THREADS.c.lease_holder.is_(None), _THREADS.c.lease_expires_at < bindparam("now")),
    )
    .values(
        lease_token=_THREADS.c.lease_token + 1,
        lease_holder=bindparam("holder"),
        lease_expires_at=bindparam("expires_at"),
    )
    .returning(
        _THREADS.c.lease_token, _THREADS.c.session_id, _THREADS.c.seq, _THREADS.c.published_seq
    )
)
_RENEW = Prepared(
    update(_THREADS)
    .where(_HELD, _THREADS.c.lease_holder.is_not(None))
    .values(lease_expires_at=bindparam("expires_at"))
)
_RELEASING = update(_THREADS).where(_HELD).values(lease_holder=None, lease_expires_at=0.0)
_RELEASE = Prepared(_RELEASING)
_RELEASE_PUBLISHED = Prepared(_RELEASING.values(published_seq=bindparam("published_seq")))
_FENCE = Prepared(
    update(_THREADS)
    .where(_HELD, _THREADS.c.lease_holder.is_not(None))
    .values(seq=_THREADS.c.seq + bindparam("count"), published_seq=bindparam("published_seq"))
    .returning(_THREADS.c.seq)
)


def acquire_lease(session: Session, thread_id: str, holder: str, lease_s: float) -> Lease | None:
    """Take the lease if it is free or expired; None when someone else holds it."""
    now, valid_until = time.time(), time.monotonic() + lease_s
    row = _ACQUIRE.execute(
        session, {"thread_id": thread_id, "now": now, "holder": holder, "expires_at": now + lease_s}
    ).first()
    if row is None:
        return None
    token, session_id, seq, published_seq = row
    return Lease(thread_id, session_id, token, holder, seq, published_seq, valid_until)


def renew_lease(session: Session, lease: Lease, lease_s: float) -> float:
    """Extend the lease; returns its new ``valid_until``, for the caller to set once the
    transaction committed. Raises LeaseLost when the token moved on or it was released."""
    valid_until = time.monotonic() + lease_s
    changed = _RENEW.run(
        session,
        {"thread_id": lease.thread_id, "token": lease.token, "expires_at": time.time() + lease_s},
    )
    if changed != 1:
        raise LeaseLost(f"the lease on {lease.thread_id} was taken over")
    return valid_until


def release_lease(session: Session, lease: Lease, published_seq: int | None = None) -> None:
    """Give the lease up (a no-op when it was already lost)."""
    held = {"thread_id": lease.thread_id, "token": lease.token}
    if published_seq is None:
        _RELEASE.run(session, held)
    else:
        _RELEASE_PUBLISHED.run(session, {**held, "published_seq": published_seq})


def fence_seqs(session: Session, lease: Lease, count: int, published_seq: int) -> int:
    """Allocate ``count`` seqs under the lease; returns the last. Raises LeaseLost."""
    row = _FENCE.execute(
        session,
        {
            "thread_id": lease.thread_id,
            "token": lease.token,
            "count": count,
            "published_seq": published_seq,
        },
    ).first()
    if row is None:
        raise LeaseLost(f"the lease on {lease.thread_id} was lost; the write was refused")
    return int(row[0])
