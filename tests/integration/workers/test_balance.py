"""Evening out agents between workers (workers/balance.py): real Redis, real workers.

A holder with a backlog kicks its agent through the queue when a live peer
carries clearly fewer agents; evenly loaded workers keep their backlogs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shared.keys import worker_loads
from shared.queue import KickSender
from shared.resources import Resources
from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.helpers import add_agent, add_instance, send, turn_of
from tests.integration.workers.backlogs import (
    assert_answered_in_order,
    queued_kicks,
    wait_finished,
)
from tests.processes import WorkerProcess
from workers.balance import STALE_S, LoadBoard


async def test_a_worker_reads_its_live_peers_drops_stopped_ones_and_skips_garbage(
    resources: Resources,
) -> None:
    a, b = LoadBoard("a", 10), LoadBoard("b", 10)
    b.carried = 3
    await b.post(resources.redis)
    stopped_at = time.time() - STALE_S - 1
    await resources.redis.hset(worker_loads(), "gone", f"0 10 {stopped_at}")
    await resources.redis.hset(worker_loads(), "garbled", "not a load")

    await a.post(resources.redis)

    assert a.peers == {"b": 3}
    assert set(await resources.redis.hkeys(worker_loads())) == {b"a", b"b", b"garbled"}
    await b.withdraw(resources.redis)
    await a.post(resources.redis)
    assert a.peers == {}


async def test_a_backlog_goes_to_a_clearly_lighter_peer_only(
    resources: Resources, kicks: KickSender
) -> None:
    busy = LoadBoard("busy", 10, kick=kicks.kick)
    idle, full = LoadBoard("idle", 10), LoadBoard("full", 0)  # full: no room for more
    busy.carried = 4
    for board in (idle, full):
        await board.post(resources.redis)
    await busy.post(resources.redis)

    # 4 against 0: hand off until the two are within one agent, counting each on the
    # peer before the next read.
    assert [await busy.hand_off("agent") for _ in range(4)] == [True, True, True, False]
    assert await queued_kicks(resources) == 1  # one agent, one pending kick (de-duplicated)

    idle.carried = 3  # 4 against 3: evenly loaded, no kick
    await idle.post(resources.redis)
    await busy.post(resources.redis)
    assert not await busy.hand_off("agent")


async def test_an_idle_worker_takes_over_part_of_a_busy_ones_backlogs(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """The first worker takes every agent's kick; a second one starts while they run."""
    settings.sweep_interval_s = 3600  # no sweeper: only kicks run turns
    first = start_worker().wait_ready()
    instance = await add_instance(resources, llm)
    llm.script(Reply(text="slow", latency_s=0.3), times=None)
    agents = [await add_agent(resources, instance) for _ in range(4)]
    backlogs: dict[str, list[str]] = {agent: [] for agent in agents}
    for i in range(40):  # 12 s per agent: longer than a worker takes to start here
        for agent in agents:
            backlogs[agent].append((await send(resources, agent, f"message {i:02d}")).id)
            assert await kicks.kick(agent)

    second = await asyncio.to_thread(lambda: start_worker().wait_ready())
    for backlog in backlogs.values():  # else this run cannot show a hand-off
        assert (await turn_of(resources, backlog[-1])).status == "queued", "backlog drained"
    turn_ids = [turn for backlog in backlogs.values() for turn in backlog]
    await wait_finished(resources, turn_ids, timeout_s=60)

    for agent, backlog in backlogs.items():
        await assert_answered_in_order(resources, agent, backlog)
    pids = {(await turn_of(resources, t)).worker_id.rsplit(":", 1)[1] for t in turn_ids}  # type: ignore[union-attr]
    assert pids == {str(first.proc.pid), str(second.proc.pid)}
