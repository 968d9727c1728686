"""SIGTERM: a worker finishes its turns, or hands them back, within its shutdown timeout.

(``tests/integration/shared/test_cancel.py`` hands one turn back in process; these
signal a real worker process and time its exit.)
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlmodel import select

from shared.models import Thread
from tests.chaos.conftest import MakeCluster, api_client, new_agents, running_on, wait_row
from tests.chaos.verify import Sent, audit
from tests.e2e.flows import send, wait_turn
from tests.fakellm import Reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
EXIT_SLACK_S = 3.0  # interpreter and Celery teardown after the last turn is settled


async def test_sigterm_lets_a_running_turn_finish_then_exits(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=1, shutdown_timeout_s=10)
    assert cluster.llm is not None
    cluster.llm.script(Reply(text=" ".join(["word"] * 20), token_delay_s=0.1))  # ~2 s
    async with api_client(cluster) as client:
        [agent] = await new_agents(client, cluster)
        turn = await send(client, agent, "finish me")
        worker = cluster.workers[0]
        await wait_row(cluster, turn["id"], running_on(worker.proc.pid))

        code, took_s = await asyncio.to_thread(cluster.terminate_worker, worker)
        done = await wait_turn(client, turn["id"], timeout_s=5)

    print(f"figure: SIGTERM with a short turn: exit {code} after {took_s:.1f} s")
    assert code == 0 and took_s < 10, (code, took_s, worker.output[-6000:])
    assert done["status"] == "completed" and done["attempt"] == 0
    assert done["output"] == " ".join(["word"] * 20)


async def test_sigterm_hands_long_turns_back_for_another_worker_to_finish(
    make_cluster: MakeCluster,
) -> None:
    # A lease far longer than the test: only the hand-back lets another worker start at once.
    cluster = make_cluster(workers=1, shutdown_timeout_s=4, lease_s=60)
    assert cluster.llm is not None
    cluster.llm.script(Reply(text="too late", latency_s=60), match="slow", times=3)
    async with api_client(cluster) as client:
        agents = await new_agents(client, cluster, 3)
        turns = [await send(client, agent, f"slow {n}") for n, agent in enumerate(agents)]
        worker = cluster.workers[0]
        for turn in turns:
            await wait_row(cluster, turn["id"], running_on(worker.proc.pid))

        code, took_s = await asyncio.to_thread(cluster.terminate_worker, worker)
        handed_back = [await wait_row(cluster, t["id"], lambda t: True) for t in turns]
        leases = await asyncio.to_thread(
            cluster.db.read_sync, lambda s: [t.lease_holder for t in s.exec(select(Thread))]
        )
        started = time.monotonic()
        await asyncio.to_thread(cluster.start_worker)
        done = [await wait_turn(client, t["id"], timeout_s=30) for t in turns]
        finish_s = time.monotonic() - started

    print(
        f"figure: SIGTERM with 3 long turns: exit {code} after {took_s:.1f} s; "
        f"finished elsewhere in {finish_s:.1f} s"
    )
    assert code == 0 and took_s < 4 + EXIT_SLACK_S, (code, took_s, worker.output[-6000:])
    assert [t.status for t in handed_back] == ["queued"] * 3
    assert [t.attempt for t in handed_back] == [0, 0, 0]  # handed back, not lost
    assert leases == [None, None, None]
    assert [t["status"] for t in done] == ["completed"] * 3
    assert [t["output"] for t in done] == [f"echo: slow {n}" for n in range(3)]
    assert finish_s < 20  # far below the 60 s lease: nobody waited for it to expire
    sent = [
        Sent(f"m{n}", a, f"slow {n}", t["id"])
        for n, (a, t) in enumerate(zip(agents, turns, strict=True))
    ]
    result = audit(cluster.db, sent)
    assert result.ok, result.problems()
