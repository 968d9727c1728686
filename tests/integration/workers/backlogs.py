"""Checks the kick and backlog tests share: the queue's length, turns finishing, their order."""

from __future__ import annotations

import asyncio

from shared.keys import celery_queue
from shared.resources import Resources
from tests.helpers import events_of, turn_of

FINISHED = ("completed", "failed", "cancelled")


async def queued_kicks(res: Resources) -> int:
    return int(await res.redis.llen(celery_queue()))


async def wait_finished(res: Resources, turn_ids: list[str], timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for turn_id in turn_ids:
        while (turn := await turn_of(res, turn_id)).status not in FINISHED:
            assert loop.time() < deadline, f"turn {turn_id} still {turn.status}"
            await asyncio.sleep(0.05)


async def assert_answered_in_order(res: Resources, agent_id: str, turn_ids: list[str]) -> None:
    turns = [await turn_of(res, t) for t in turn_ids]
    assert [t.status for t in turns] == ["completed"] * len(turns)
    assert [t.position for t in turns] == sorted(t.position for t in turns)
    events = await events_of(res, agent_id)
    assert [e.data["content"] for e in events if e.type == "user_message"] == [
        t.input for t in turns
    ]
    turn_sequence = [e.turn_id for e in events if e.turn_id]
    collapsed = [t for i, t in enumerate(turn_sequence) if i == 0 or turn_sequence[i - 1] != t]
    assert collapsed == turn_ids  # each turn's events contiguous, in arrival order
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
