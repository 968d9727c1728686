"""The thread store: gapless seqs under racing writers, and a fence that refuses stale holders."""

from __future__ import annotations

import threading

import pytest

from shared.db import Database
from shared.errors import LeaseLost
from shared.events import NewEvent
from shared.leases import acquire_lease, release_lease
from shared.models import ThreadEvent
from shared.resources import Resources
from shared.sessions import spawn_agent
from shared.threads import append_events, events_after, session_events_after
from tests.fakellm import FakeLLM
from tests.helpers import add_agent, add_instance


def _append_under_lease(db: Database, agent_id: str, holder: str, n: int) -> int:
    """Take the lease, append ``n`` events, release; returns how many got in."""
    written = 0
    while written < n:
        lease = db.run_sync(acquire_lease, agent_id, holder, 30)
        if lease is None:
            continue
        try:
            db.run_sync(
                append_events, lease, None, [NewEvent.of("user_message", content=holder)], 0
            )
            written += 1
        finally:
            db.run_sync(release_lease, lease)
    return written


async def test_racing_writers_get_gapless_unique_seqs(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    first = await add_agent(res, instance)
    second = (await res.db.run(spawn_agent, first.rsplit(".", 1)[0], "other", {})).id
    db = Database(res.db.url, pool_threads=8)
    per_writer = 25
    threads = [
        threading.Thread(target=_append_under_lease, args=(db, agent, f"w{i}", per_writer))
        for i, agent in enumerate([first, second] * 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()

    for agent in (first, second):
        seqs = [e.seq for e in await res.db.read(events_after, agent, 0, 10_000)]
        assert seqs == list(range(1, 3 * per_writer + 1))
    session_seqs = [
        e.session_seq
        for e in await res.db.read(session_events_after, first.rsplit(".", 1)[0], 0, 10_000)
    ]
    assert session_seqs == list(range(1, 6 * per_writer + 1))


async def test_stale_lease_holder_cannot_append(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    stale = await res.db.run(acquire_lease, agent_id, "old", 0.0)  # expires at once
    assert stale is not None
    fresh = await res.db.run(acquire_lease, agent_id, "new", 30)
    assert fresh is not None and fresh.token == stale.token + 1

    with pytest.raises(LeaseLost):
        await res.db.run(
            append_events, stale, None, [NewEvent.of("user_message", content="late")], 0
        )
    await res.db.run(append_events, fresh, None, [NewEvent.of("user_message", content="ok")], 0)

    events: list[ThreadEvent] = await res.db.read(events_after, agent_id, 0, 10)
    assert [(e.seq, e.data["content"]) for e in events] == [(1, "ok")]


async def test_live_lease_is_not_taken_twice(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    assert await res.db.run(acquire_lease, agent_id, "a", 30) is not None
    assert await res.db.run(acquire_lease, agent_id, "b", 30) is None
