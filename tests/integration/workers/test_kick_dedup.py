"""Kick de-duplication: at most one kick per agent on its way (shared/queue.py KickSender).

Real Redis and real worker processes. The sender publishes a kick only when its
``SET NX`` of the agent's kick-pending marker succeeds; the worker deletes the
marker before it claims; the sweeper re-kicks regardless of the marker.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.keys import kick_pending
from shared.queue import KICK_PENDING_TTL_S, KickSender, make_celery
from shared.resources import Resources
from shared.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.fakellm import FakeLLM, Reply
from tests.helpers import add_agent, add_instance, send, turn_of
from tests.integration.workers.backlogs import assert_answered_in_order, queued_kicks, wait_finished
from tests.processes import WorkerProcess


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def kicks_received(worker: WorkerProcess) -> int:
    """How many kick tasks the worker was handed (Celery logs each one at INFO)."""
    return sum(
        1 for line in worker.output.splitlines() if "bobbin.kick[" in line and "received" in line
    )


# -- the sender alone --------------------------------------------------------------------


async def test_a_pending_kick_suppresses_the_next_but_not_a_rekick(
    resources: Resources, kicks: KickSender
) -> None:
    assert kicks.send_kick("agent_a")
    assert kicks.send_kick("agent_a")  # pending: True, and nothing published
    assert kicks.send_kick("agent_b")  # markers are per agent
    assert await queued_kicks(resources) == 2
    assert 0 < await resources.redis.ttl(kick_pending("agent_a")) <= KICK_PENDING_TTL_S

    assert kicks.send_rekick("agent_a")  # recovery ignores the marker
    assert await queued_kicks(resources) == 3


async def test_a_failed_publish_drops_the_marker(resources: Resources, settings: Settings) -> None:
    away = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/9"})
    marker_client = redis.Redis.from_url(TEST_REDIS_URL)
    with KickSender(make_celery(away), marker_client) as kicks:
        assert not kicks.send_kick("agent_a")
    assert not await resources.redis.exists(kick_pending("agent_a"))  # the next kick is sent


async def test_a_redis_error_on_the_marker_still_kicks(
    resources: Resources, settings: Settings
) -> None:
    broken = redis.Redis(port=closed_port(), retry=Retry(NoBackoff(), 0))
    with KickSender(make_celery(settings), broken) as kicks:
        assert kicks.send_kick("agent_a")
        assert kicks.send_kick("agent_a")  # cannot tell if one is pending: send
    assert await queued_kicks(resources) == 2


# -- with workers ------------------------------------------------------------------------


async def test_a_backlog_of_messages_is_one_kick_and_runs_in_order(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    turn_ids = []
    for i in range(30):  # as the API does: commit the turn, then kick
        turn_ids.append((await send(resources, agent_id, f"message {i:03d}")).id)
        assert await kicks.kick(agent_id)
    assert await queued_kicks(resources) == 1  # 30 messages, one task

    settings.sweep_interval_s = 3600  # no sweeper: the kicks alone run the turns
    worker = start_worker().wait_ready()
    await wait_finished(resources, turn_ids)

    await assert_answered_in_order(resources, agent_id, turn_ids)
    assert kicks_received(worker) == 1
    assert not await resources.redis.exists(kick_pending(agent_id))


async def test_messages_to_a_busy_agent_send_one_more_kick(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A worker with one slot runs a slow turn; 20 messages arrive meanwhile."""
    settings.sweep_interval_s = 3600  # no sweeper: the kicks alone run the turns
    worker = start_worker(concurrency=1).wait_ready()
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    llm.script(Reply(text="slow", latency_s=1.5), match="first")
    turn_ids = [(await send(resources, agent_id, "first")).id]
    assert await kicks.kick(agent_id)
    while (await turn_of(resources, turn_ids[0])).status != "running":
        await asyncio.sleep(0.02)

    for i in range(20):
        turn_ids.append((await send(resources, agent_id, f"message {i:03d}")).id)
        assert await kicks.kick(agent_id)
    await wait_finished(resources, turn_ids)

    await assert_answered_in_order(resources, agent_id, turn_ids)
    # The running kick, then one for all 20: it waited in the queue behind the running
    # one, and the holder's re-check after each release ran the turns meanwhile.
    while kicks_received(worker) < 2:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert kicks_received(worker) == 2


async def test_a_stale_marker_does_not_strand_a_turn(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A marker whose kick was lost (set here by hand, no task): the sweeper's kick runs."""
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)
    await resources.redis.set(kick_pending(agent_id), 1, ex=KICK_PENDING_TTL_S)
    turn = await send(resources, agent_id, "hello")
    assert await kicks.kick(agent_id)
    assert await queued_kicks(resources) == 0  # suppressed by the stale marker

    settings.sweep_interval_s = 1
    worker = start_worker().wait_ready()
    await wait_finished(resources, [turn.id], timeout_s=20)

    assert (await turn_of(resources, turn.id)).status == "completed"
    assert "sweeper kicked" in worker.output
    assert not await resources.redis.exists(kick_pending(agent_id))  # its kick dropped it


async def test_after_a_worker_takes_a_kick_a_new_message_kicks_again(
    resources: Resources,
    settings: Settings,
    llm: FakeLLM,
    kicks: KickSender,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    settings.sweep_interval_s = 3600  # no sweeper: only the second kick can run the turn
    worker = start_worker().wait_ready()
    instance = await add_instance(resources, llm)
    agent_id = await add_agent(resources, instance)

    first = await send(resources, agent_id, "one")
    assert await kicks.kick(agent_id)
    await wait_finished(resources, [first.id])
    assert not await resources.redis.exists(kick_pending(agent_id))
    assert kicks_received(worker) == 1

    second = await send(resources, agent_id, "two")
    assert await kicks.kick(agent_id)
    await wait_finished(resources, [second.id])

    assert kicks_received(worker) == 2
    await assert_answered_in_order(resources, agent_id, [first.id, second.id])
