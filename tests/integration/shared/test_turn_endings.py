"""However a turn ends, it closes its open tool calls, so the agent's next turn works.

Each test ends a turn between a ``tool_call`` and its ``tool_result`` by one
path (a provider that disappears, a timeout, a lost worker, a missing working
directory), then switches the agent to a working instance and checks that
its next message completes. The fake LLM refuses a conversation with a call
left without its result, as the real APIs do (400), so a dangling call
would fail that next turn.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.endings import Ending
from shared.errors import TurnTimeout
from shared.events import NewEvent
from shared.leases import acquire_lease, release_lease
from shared.models import Thread, Turn
from shared.providers.instances import delete_instance
from shared.resources import Resources
from shared.threads import ThreadWriter, append_events
from tests.fakellm import FakeLLM, Reply
from tests.helpers import (
    FAST_RETRY,
    MODELS,
    add_agent,
    add_instance,
    decide_call,
    events_of,
    pending,
    run,
    send,
    switch_provider,
    turn_of,
)
from workers.runner import WorkerState, run_kick


def write_call() -> Reply:
    return Reply(tool_calls=[("file_write", {"path": "notes.txt", "content": "hi"})])


def sleep_call(seconds: float) -> Reply:
    return Reply(tool_calls=[("bash", {"command": f"sleep {seconds}"})])


async def assert_calls_closed(res: Resources, agent_id: str, turn_id: str) -> None:
    """Every call of the turn has exactly one result, and the closing event comes last."""
    events = [e for e in await events_of(res, agent_id) if e.turn_id == turn_id]
    calls = [e.data["tool_call_id"] for e in events if e.type == "tool_call"]
    results = [e.data["tool_call_id"] for e in events if e.type == "tool_result"]
    assert calls and sorted(results) == sorted(calls)
    closing = events[-1]
    assert closing.type in ("turn_failed", "turn_cancelled", "turn_completed")
    aborted = [e for e in events if e.type == "tool_result" and e.data["status"] == "aborted"]
    # the aborted results were written by the closing transaction, beside the closing event
    assert all(e.created_at == closing.created_at for e in aborted)


async def assert_next_turn_completes(
    res: Resources, llm: FakeLLM, agent_id: str, instance_id: str
) -> None:
    """Switch the agent to a working instance; its next message must complete."""
    await switch_provider(res, agent_id, instance_id, MODELS["openai"])
    turn = await send(res, agent_id, "are you still there?")
    await run(res, agent_id)
    done = await turn_of(res, turn.id)
    assert done.status == "completed", done.error
    assert done.output == "echo: are you still there?"
    # the model was sent the earlier call with a result, as the real APIs demand
    assert any(m.get("role") == "tool" for m in llm.requests[-1].body["messages"])


async def test_approved_call_of_a_deleted_instance_is_aborted_and_the_agent_recovers(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    first = await add_instance(res, llm)
    working = await add_instance(res, llm, "openai")
    agent_id = await add_agent(res, first, working_directory=str(tmp_path / "w"))
    llm.script(write_call())
    turn = await send(res, agent_id, "write a note")
    await run(res, agent_id)
    [request] = await pending(res, agent_id.rsplit(".", 1)[0])

    await res.db.run(delete_instance, first)
    await decide_call(res, agent_id, request.tool_call_id, "allow_once")
    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "provider_instance_not_found"
    assert not (tmp_path / "w" / "notes.txt").exists()
    await assert_calls_closed(res, agent_id, turn.id)
    await assert_next_turn_completes(res, llm, agent_id, working)


async def test_turn_timeout_during_a_tool_aborts_the_call_and_the_agent_recovers(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm, "openai")
    agent_id = await add_agent(
        res, instance, "openai", policies={"bash": "allow"}, working_directory=str(tmp_path / "w")
    )
    llm.script(sleep_call(30))
    res.settings.turn_timeout_s = 1.5
    turn = await send(res, agent_id, "wait a while")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "turn_timeout"
    await assert_calls_closed(res, agent_id, turn.id)
    res.settings.turn_timeout_s = 900
    await assert_next_turn_completes(res, llm, agent_id, instance)


async def test_worker_lost_during_a_tool_on_the_last_attempt_aborts_the_call(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm, "openai")
    agent_id = await add_agent(
        res, instance, "openai", policies={"bash": "allow"}, working_directory=str(tmp_path / "w")
    )
    llm.script(sleep_call(30))
    turn = await send(res, agent_id, "wait a while")
    state = WorkerState(worker_id="doomed", retry=FAST_RETRY)
    kick = asyncio.create_task(run_kick(res, state, agent_id))
    while not [e for e in await events_of(res, agent_id) if e.type == "tool_call"]:
        await asyncio.sleep(0.02)
    kick.cancel()  # the worker dies mid-call: no bookkeeping, the lease left to expire
    await asyncio.gather(kick, return_exceptions=True)
    await res.db.run(lambda s: s.execute(update(Thread).values(lease_expires_at=0.0)))
    await res.db.run(
        lambda s: s.execute(update(Turn).values(attempt=res.settings.max_attempts - 1))
    )

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "worker_lost"
    await assert_calls_closed(res, agent_id, turn.id)
    await assert_next_turn_completes(res, llm, agent_id, instance)


async def test_missing_working_directory_after_approval_aborts_the_call(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm, "openai")
    workdir = tmp_path / "w"
    agent_id = await add_agent(res, instance, "openai", working_directory=str(workdir))
    llm.script(write_call())
    turn = await send(res, agent_id, "write a note")
    await run(res, agent_id)
    [request] = await pending(res, agent_id.rsplit(".", 1)[0])
    shutil.rmtree(workdir)
    workdir.write_text("a file where the directory was")

    await decide_call(res, agent_id, request.tool_call_id, "allow_once")
    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "working_directory_unavailable"
    await assert_calls_closed(res, agent_id, turn.id)
    workdir.unlink()
    await assert_next_turn_completes(res, llm, agent_id, instance)


async def test_a_thread_that_already_holds_a_dangling_call_is_answered_not_rewritten(
    res: Resources, llm: FakeLLM
) -> None:
    """Databases in the field hold such threads: the model is sent an aborted result."""
    instance = await add_instance(res, llm, "openai")
    agent_id = await add_agent(res, instance, "openai")
    first = await send(res, agent_id, "first")
    await run(res, agent_id)
    lease = await res.db.run(acquire_lease, agent_id, "old-version", 30)
    assert lease is not None
    dangling = NewEvent.of(
        "tool_call",
        tool_call_id="tc_0123456789abcdef",
        provider_call_id="call_left_open",
        tool="file_read",
        arguments={"path": "x"},
        round=1,
    )
    await ThreadWriter(res.db, lease, res.sink).append(first.id, [dangling])
    await res.db.run(release_lease, lease)
    before = await events_of(res, agent_id)

    second = await send(res, agent_id, "second")
    await run(res, agent_id)

    done = await turn_of(res, second.id)
    assert done.status == "completed", done.error
    sent = llm.requests[-1].body["messages"]
    answer = next(m for m in sent if m.get("tool_call_id") == "call_left_open")
    assert "aborted" in answer["content"]
    after = await events_of(res, agent_id)
    assert after[: len(before)] == before
    assert not [e for e in after if e.type == "tool_result"]


def tool_call_event(call_id: str) -> NewEvent:
    return NewEvent.of(
        "tool_call",
        tool_call_id=call_id,
        provider_call_id=f"call_{call_id}",
        tool="file_read",
        arguments={"path": "x"},
        round=1,
    )


def tool_result_event(call_id: str) -> NewEvent:
    return NewEvent.of("tool_result", tool_call_id=call_id, status="completed", content="x")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("in_flight", ["tool_call", "tool_result"])
async def test_an_ending_reads_the_turn_after_an_append_still_committing(
    res: Resources, llm: FakeLLM, in_flight: str
) -> None:
    """A timeout or a cancel can end a turn while one of its appends is still committing
    on another connection. The ending must see that append's events: a call it committed
    gets its aborted result, and a result it committed is not answered a second time."""
    instance = await add_instance(res, llm, "openai")
    agent_id = await add_agent(res, instance, "openai")
    turn = await send(res, agent_id, "hello")
    lease = await res.db.run(acquire_lease, agent_id, "v", 30)
    assert lease is not None
    await res.db.run(
        lambda s: s.execute(update(Turn).where(Turn.id == turn.id).values(status="running"))
    )
    writer = ThreadWriter(res.db, lease, res.sink)
    call_id = "tc_00000000000000a1"
    if in_flight == "tool_result":
        await writer.append(turn.id, [tool_call_event(call_id)])
    appended = tool_call_event(call_id) if in_flight == "tool_call" else tool_result_event(call_id)

    appending, release = threading.Event(), threading.Event()

    def slow_append() -> None:
        with Session(res.db.engine) as session, session.begin():
            append_events(session, writer.lease, turn.id, [appended], writer.published_seq)
            appending.set()
            release.wait(10)

    committing = asyncio.create_task(asyncio.to_thread(slow_append))
    assert await asyncio.to_thread(appending.wait, 10)
    ending = asyncio.create_task(
        writer.end_turn(turn.id, Ending.failed(TurnTimeout("the turn ran too long")))
    )
    await asyncio.sleep(0.3)  # the ending's transaction is under way
    release.set()
    await committing
    await ending

    events = [e for e in await events_of(res, agent_id) if e.turn_id == turn.id]
    results = [e.data["status"] for e in events if e.type == "tool_result"]
    assert results == (["aborted"] if in_flight == "tool_call" else ["completed"])
    assert events[-1].type == "turn_failed"
