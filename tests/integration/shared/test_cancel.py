"""Cancelling a turn in each state: queued, streaming, awaiting approval, finished."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.agents.agent import CancelReason
from shared.agents.factory import rehydrate_agent
from shared.cancel import cancel_turn
from shared.errors import TurnNotCancellable
from shared.leases import acquire_lease
from shared.resources import Resources
from shared.threads import ThreadWriter
from shared.turns import agents_needing_kick
from tests.fakellm import FakeLLM, Reply
from tests.helpers import (
    FAST_RETRY,
    add_agent,
    add_instance,
    decide_call,
    events_of,
    pending,
    run,
    send,
    turn_of,
)
from workers.runner import WorkerState, run_kick


async def test_queued_turn_is_cancelled_on_its_row_without_events(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "never mind")

    await cancel_turn(res.db, res.redis, res.sink, turn.id, "api")
    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "cancelled"
    assert await events_of(res, agent_id) == []
    assert llm.requests == []


async def test_streaming_turn_cancels_keeping_partial_text(res: Resources, llm: FakeLLM) -> None:
    llm.script(Reply(text=" ".join(f"word{i}" for i in range(50)), token_delay_s=0.05))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "tell me a long story")
    state = WorkerState(worker_id="w", retry=FAST_RETRY)
    kick = asyncio.create_task(run_kick(res, state, agent_id))
    while not res.sink.of_type("agent_token"):  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)

    started = asyncio.get_running_loop().time()
    assert state.cancel(turn.id, CancelReason.USER)
    await kick
    elapsed = asyncio.get_running_loop().time() - started

    assert elapsed < 1.0
    cancelled = await turn_of(res, turn.id)
    assert cancelled.status == "cancelled"
    events = await events_of(res, agent_id)
    assert [e.type for e in events][-2:] == ["agent_message", "turn_cancelled"]
    assert events[-2].data["partial"] is True
    assert events[-2].data["content"].startswith("word0")


async def test_awaiting_turn_is_cancelled_by_the_api_with_aborted_results(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(Reply(tool_calls=[("bash", {"command": "echo hi"})]))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    turn = await send(res, agent_id, "run it")
    await run(res, agent_id)
    assert (await turn_of(res, turn.id)).status == "awaiting_approval"

    await cancel_turn(res.db, res.redis, res.sink, turn.id, "api")

    assert (await turn_of(res, turn.id)).status == "cancelled"
    events = await events_of(res, agent_id)
    assert [e.type for e in events][-2:] == ["tool_result", "turn_cancelled"]
    assert events[-2].data["status"] == "aborted"
    assert await pending(res, agent_id.rsplit(".", 1)[0]) == []


async def test_finished_turn_is_not_cancellable(res: Resources, llm: FakeLLM) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hi")
    await run(res, agent_id)

    with pytest.raises(TurnNotCancellable):
        await cancel_turn(res.db, res.redis, res.sink, turn.id, "api")


async def test_shutdown_hands_a_running_turn_back_to_the_queue(
    res: Resources, llm: FakeLLM
) -> None:
    llm.script(Reply(text="slow answer", latency_s=5))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    turn = await send(res, agent_id, "hello")
    state = WorkerState(worker_id="w", retry=FAST_RETRY)
    kick = asyncio.create_task(run_kick(res, state, agent_id))
    while turn.id not in state.active:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)

    state.cancel_all(CancelReason.SHUTDOWN)
    await kick

    requeued = await turn_of(res, turn.id)
    assert requeued.status == "queued"
    llm.script(Reply(text="done now"))
    await run(res, agent_id)
    done = await turn_of(res, turn.id)
    assert done.status == "completed" and done.output == "done now"
    types = [e.type for e in await events_of(res, agent_id)]
    assert types.count("user_message") == 1 and types.count("turn_started") == 1


async def test_a_shutdown_landing_while_a_kick_claims_leaves_the_turn_queued(
    res: Resources, llm: FakeLLM
) -> None:
    """A worker's shutdown landing anywhere in a turn's claim, rehydration or start
    leaves the turn queued for another worker, at once: not started after the hand-back
    (the worker would wait for its whole answer), not run on by a cancel the HTTP client
    swallowed, not ended cancelled because its start had not committed. Raced at delays
    across those steps."""
    llm.script(Reply(text="too late", latency_s=60), times=None)
    instance = await add_instance(res, llm)
    started_anyway = []
    for attempt in range(40):
        agent_id = await add_agent(res, instance)
        turn = await send(res, agent_id, "hello")
        state = WorkerState(worker_id=f"w{attempt}", retry=FAST_RETRY)
        kick = asyncio.create_task(run_kick(res, state, agent_id))
        await asyncio.sleep(attempt * 0.0005)  # 0 to 20 ms: before, in and after the claim
        state.cancel_all(CancelReason.SHUTDOWN)
        try:
            await asyncio.wait_for(kick, 5)
        except TimeoutError:
            started_anyway.append(attempt)
            continue
        row = await turn_of(res, turn.id)
        assert row.status == "queued" and row.attempt == 0, (attempt, row.status, row.error)
        assert await res.db.run(acquire_lease, agent_id, "next-worker", 5) is not None

    assert not started_anyway, f"the turn ran on after the shutdown at delays {started_anyway}"


async def test_a_turn_awaiting_approval_cancelled_while_another_holds_the_agent_still_ends(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    """The cancel cannot take the lease (a worker that died holding it): the flagged turn
    is the agent's runnable head, so once the lease lapses the sweeper kicks the agent,
    the turn ends cancelled and the message queued behind it runs."""
    llm.script(Reply(tool_calls=[("bash", {"command": "echo hi"})]))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    turn = await send(res, agent_id, "run it")
    await run(res, agent_id)
    behind = await send(res, agent_id, "and then this")
    assert await res.db.run(acquire_lease, agent_id, "dead-worker", 1.5) is not None

    await cancel_turn(res.db, res.redis, res.sink, turn.id, "api")
    assert (await turn_of(res, turn.id)).status == "awaiting_approval"  # flagged only
    await asyncio.sleep(1.6)  # the dead worker's lease lapses

    assert agent_id in await res.db.read(agents_needing_kick, time.time())
    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "cancelled"
    assert (await turn_of(res, behind.id)).status == "completed"
    assert await pending(res, agent_id.rsplit(".", 1)[0]) == []


async def test_a_turn_cancelled_while_a_worker_claims_it_runs_nothing(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    """A decided turn is queued again; a worker reads it, then its cancel is accepted
    before the worker sets it running. The start sees the flag: the approved tool does
    not run, the model is not called, and the turn ends cancelled."""
    llm.script(Reply(tool_calls=[("file_write", {"path": "late.txt", "content": "x"})]))
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    turn = await send(res, agent_id, "write it")
    await run(res, agent_id)
    (request,) = await pending(res, agent_id.rsplit(".", 1)[0])
    await decide_call(res, agent_id, request.tool_call_id, "allow")
    lease = await res.db.run(acquire_lease, agent_id, "w", 30)
    assert lease is not None
    claimed = await turn_of(res, turn.id)  # what the worker's claim read
    assert claimed.status == "queued" and not claimed.cancel_requested
    requests_before = len(llm.requests)

    await cancel_turn(res.db, res.redis, res.sink, turn.id, "api")  # the worker holds it
    agent = await rehydrate_agent(res, ThreadWriter(res.db, lease, res.sink))
    outcome = await agent.run_turn(claimed)

    assert outcome.value == "cancelled"
    assert (await turn_of(res, turn.id)).status == "cancelled"
    assert not (tmp_path / "w" / "late.txt").exists()
    assert len(llm.requests) == requests_before
    events = await events_of(res, agent_id)
    assert [e.type for e in events][-2:] == ["tool_result", "turn_cancelled"]
    assert events[-2].data["status"] == "aborted"
