"""Approvals suspend a turn, survive every object being dropped, and resume from the thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlmodel import Session

from shared.approvals import decide
from shared.errors import ApprovalAlreadyDecided
from shared.models import Approval
from shared.resources import Resources, open_resources
from shared.settings import Settings
from shared.sink import MemorySink
from tests.fakellm import FakeLLM, Reply
from tests.helpers import (
    add_agent,
    add_instance,
    add_sibling,
    decide_call,
    events_of,
    pending,
    run,
    send,
    turn_of,
)


def write_call(path: str = "notes.txt", content: str = "hello") -> Reply:
    return Reply(tool_calls=[("file_write", {"path": path, "content": content})])


async def test_ask_tool_suspends_and_resumes_on_a_fresh_agent_after_allow(
    settings: Settings, llm: FakeLLM, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    first = await open_resources(settings, sink=MemorySink())
    instance = await add_instance(first, llm)
    agent_id = await add_agent(first, instance, working_directory=str(workdir))
    llm.script(write_call(), match="write")
    turn = await send(first, agent_id, "please write a file")
    await run(first, agent_id, worker="worker-a")

    assert (await turn_of(first, turn.id)).status == "awaiting_approval"
    session_id = agent_id.rsplit(".", 1)[0]
    [request] = await pending(first, session_id)
    assert request.tool == "file_write"
    assert not (workdir / "notes.txt").exists()
    first_request = llm.requests[-1].body
    await first.aclose()  # every object of the first worker is gone

    second = await open_resources(settings, sink=MemorySink())
    assert await decide_call(second, agent_id, request.tool_call_id, "allow_once") == [agent_id]
    llm.script(Reply(text="written"))
    await run(second, agent_id, worker="worker-b")

    done = await turn_of(second, turn.id)
    assert done.status == "completed" and done.output == "written", done.error
    assert (workdir / "notes.txt").read_text() == "hello"
    types = [e.type for e in await events_of(second, agent_id)]
    assert types[-6:] == [
        "tool_call",
        "tool_approval_request",
        "tool_approval_response",
        "tool_result",
        "agent_message",
        "turn_completed",
    ]
    # The continuation sent the identical conversation, plus the call and its result.
    resumed = llm.requests[-1].body
    assert resumed["system"] == first_request["system"]
    assert resumed["messages"][: len(first_request["messages"])] == first_request["messages"]
    call, result = resumed["messages"][-2:]
    assert call["role"] == "assistant" and call["content"][0]["type"] == "tool_use"
    assert result["content"][0]["tool_use_id"] == call["content"][0]["id"]
    await second.aclose()


async def test_denied_call_gets_denied_result_and_turn_continues(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    llm.script(Reply(tool_calls=[("bash", {"command": "touch pwned"})]), match="run")
    turn = await send(res, agent_id, "run something")
    await run(res, agent_id)
    [request] = await pending(res, agent_id.rsplit(".", 1)[0])

    await decide_call(res, agent_id, request.tool_call_id, "deny")
    with pytest.raises(ApprovalAlreadyDecided):
        await decide_call(res, agent_id, request.tool_call_id, "allow_once")
    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "completed"
    results = [e for e in await events_of(res, agent_id) if e.type == "tool_result"]
    assert [r.data["status"] for r in results] == ["denied"]
    assert not (tmp_path / "w" / "pwned").exists()


async def test_allow_session_grants_the_tool_to_every_agent_of_the_session(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm)
    first = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    second = await add_sibling(res, first, "helper", {})
    llm.script(write_call("a.txt"), match="one")
    llm.script(write_call("b.txt"), match="two")
    turn_a = await send(res, first, "one")
    turn_b = await send(res, second, "two")
    await run(res, first)
    await run(res, second)
    session_id = first.rsplit(".", 1)[0]
    requests = await pending(res, session_id)
    assert len(requests) == 2
    mine = next(r for r in requests if r.agent_id == first)

    kicked = await decide_call(res, first, mine.tool_call_id, "allow_session")

    assert sorted(kicked) == sorted([first, second])
    assert await pending(res, session_id) == []
    await run(res, first)
    await run(res, second)
    assert (await turn_of(res, turn_a.id)).status == "completed"
    assert (await turn_of(res, turn_b.id)).status == "completed"
    # a later call of the granted tool runs without asking
    llm.script(write_call("c.txt"), match="three")
    turn_c = await send(res, second, "three")
    await run(res, second)
    assert (await turn_of(res, turn_c.id)).status == "completed"
    assert (tmp_path / "w" / "c.txt").exists()


async def test_deny_policy_wins_over_a_session_grant(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(
        res, instance, working_directory=str(tmp_path / "w"), policies={"file_write": "deny"}
    )
    llm.script(write_call(), match="write")
    turn = await send(res, agent_id, "write it")

    await run(res, agent_id)

    assert (await turn_of(res, turn.id)).status == "completed"
    results = [e for e in await events_of(res, agent_id) if e.type == "tool_result"]
    assert results[0].data["status"] == "denied"
    assert await pending(res, agent_id.rsplit(".", 1)[0]) == []


async def test_reading_tool_runs_without_asking(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "readme.md").write_text("the secret of bobbin")
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(workdir))
    llm.script(Reply(tool_calls=[("file_read", {"path": "readme.md"})]), match="read")
    turn = await send(res, agent_id, "read the readme")

    await run(res, agent_id)

    done = await turn_of(res, turn.id)
    assert done.status == "completed"
    assert done.output is not None and "the secret of bobbin" in done.output  # the fake echoes


async def test_tool_rounds_are_bounded(
    res: Resources, settings: Settings, llm: FakeLLM, tmp_path: Path
) -> None:
    settings.max_tool_rounds = 3
    (tmp_path / "w").mkdir()
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    llm.script(Reply(tool_calls=[("file_list", {"path": "."})]), times=None)
    turn = await send(res, agent_id, "loop forever")

    await run(res, agent_id)

    failed = await turn_of(res, turn.id)
    assert failed.error is not None and failed.error["code"] == "max_tool_rounds_exceeded"
    assert len(llm.requests) == 3


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_allow_session_never_overwrites_a_deny_decided_meanwhile(
    res: Resources, llm: FakeLLM, tmp_path: Path
) -> None:
    """Two deciders at once: B denies the second agent's call (its transaction still open)
    while A allows the tool for the session. B was answered first: its deny stands, and
    A's grant decides only what was still undecided."""
    instance = await add_instance(res, llm)
    first = await add_agent(res, instance, working_directory=str(tmp_path / "w"))
    second = await add_sibling(res, first, "helper", {})
    llm.script(write_call("a.txt"), match="one")
    llm.script(write_call("b.txt"), match="two")
    await send(res, first, "one")
    turn_b = await send(res, second, "two")
    await run(res, first)
    await run(res, second)
    requests = await pending(res, first.rsplit(".", 1)[0])
    mine = next(r for r in requests if r.agent_id == first)
    theirs = next(r for r in requests if r.agent_id == second)

    denying, commit = threading.Event(), threading.Event()

    def deny_and_wait() -> None:
        with Session(res.db.engine) as session, session.begin():
            decide(session, second, theirs.tool_call_id, "deny")
            denying.set()
            commit.wait(10)

    denier = asyncio.create_task(asyncio.to_thread(deny_and_wait))
    assert await asyncio.to_thread(denying.wait, 10)
    granting = asyncio.create_task(decide_call(res, first, mine.tool_call_id, "allow_session"))
    await asyncio.sleep(0.3)  # the grant's transaction is under way
    commit.set()
    await denier
    kicked = await granting

    assert kicked == [first]
    decided = await res.db.read(lambda s: s.get(Approval, (second, theirs.tool_call_id)))
    assert decided is not None and decided.decision == "deny"
    await run(res, second)
    assert (await turn_of(res, turn_b.id)).status == "completed"
    assert not (tmp_path / "w" / "b.txt").exists()
