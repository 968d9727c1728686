"""Cancelling a turn in each state: queued, streaming, awaiting approval, finished."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.agents.agent import CancelReason
from shared.cancel import cancel_turn
from shared.errors import TurnNotCancellable
from shared.resources import Resources
from tests.fakellm import FakeLLM, Reply
from tests.helpers import (
    FAST_RETRY,
    add_agent,
    add_instance,
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
