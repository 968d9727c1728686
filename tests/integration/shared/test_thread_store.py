"""The thread store: gapless seqs under racing writers, and a fence that refuses stale holders."""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import UTC, datetime

import pytest

from shared.agents.context import EventCache
from shared.db import Database
from shared.errors import LeaseLost
from shared.events import NewEvent, StoredEvent
from shared.leases import acquire_lease, release_lease
from shared.resources import Resources
from shared.sessions import spawn_agent
from shared.threads import append_events, events_after, session_events_after
from tests.fakellm import FakeLLM, Reply
from tests.helpers import FAST_RETRY, add_agent, add_instance, events_of, send
from workers.runner import WorkerState, run_kick


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

    events = await res.db.read(events_after, agent_id, 0, 10)
    assert [(e.seq, e.data["content"]) for e in events] == [(1, "ok")]


async def test_live_lease_is_not_taken_twice(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    assert await res.db.run(acquire_lease, agent_id, "a", 30) is not None
    assert await res.db.run(acquire_lease, agent_id, "b", 30) is None


async def test_a_worker_rebuilds_from_its_cache_plus_what_others_appended(
    res: Resources, llm: FakeLLM
) -> None:
    """Worker A caches the thread; B runs the next turn; A's next claim must see B's turn."""
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    a, b = (
        WorkerState(worker_id="a", retry=FAST_RETRY),
        WorkerState(worker_id="b", retry=FAST_RETRY),
    )
    for worker, text in ((a, "one"), (b, "two"), (a, "three")):
        llm.script(Reply(text=f"answer {text}"), match=text)
        await send(res, agent_id, text)
        await run_kick(res, worker, agent_id)

    cached = a.events.take(agent_id)
    stored = await events_of(res, agent_id)
    assert cached == stored  # the cache is the committed thread, B's turn included
    sent = [_text(m["content"]) for m in llm.requests[-1].body["messages"]]
    assert sent == ["one", "answer one", "two", "answer two", "three"]


async def test_a_cached_thread_longer_than_the_committed_one_is_not_used(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    worker = WorkerState(worker_id="a", retry=FAST_RETRY)
    llm.script(Reply(text="first answer"), match="first")
    await send(res, agent_id, "first")
    await run_kick(res, worker, agent_id)
    real = worker.events.take(agent_id)
    forged = StoredEvent(**{**asdict(real[-1]), "seq": real[-1].seq + 50, "type": "user_message"})
    worker.events.keep(agent_id, [*real, forged])

    llm.script(Reply(text="second answer"), match="second")
    await send(res, agent_id, "second")
    await run_kick(res, worker, agent_id)

    assert worker.events.take(agent_id) == await events_of(res, agent_id)


def test_event_cache_evicts_the_least_recent_agents_past_its_bound() -> None:
    def events(agent: str, count: int) -> list[StoredEvent]:
        now = datetime.now(UTC)
        return [StoredEvent(agent, i, "s", i, "user_message", {}, None, now) for i in range(count)]

    cache = EventCache(max_events=10)
    cache.keep("a", events("a", 4))
    cache.keep("b", events("b", 4))
    cache.keep("a", events("a", 5))  # refreshed: now the most recent
    cache.keep("c", events("c", 4))  # 13 > 10: b, the least recent, goes
    assert cache.take("b") == []
    assert len(cache.take("a")) == 5 and len(cache.take("c")) == 4
    cache.keep("huge", events("huge", 11))  # never held: it alone exceeds the bound
    assert cache.take("huge") == []


def _text(content: str | list[dict[str, str]]) -> str:
    return content if isinstance(content, str) else "".join(b["text"] for b in content)
