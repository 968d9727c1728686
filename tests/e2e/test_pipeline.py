"""The whole service over HTTP: real API and worker processes, Redis, the database, the fake LLM."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.flows import create_instance, create_session, send, wait_turn
from tests.fakellm import FakeLLM, Reply
from tests.processes import ApiProcess, WorkerProcess
from tests.sse import StreamCollector


def closing(turn_id: str) -> Callable[[list], bool]:
    return lambda events: any(
        e.event in ("turn_completed", "turn_failed", "turn_cancelled")
        and e.data["turn_id"] == turn_id
        for e in events
    )


async def test_full_conversation_over_http(
    client: httpx.AsyncClient, llm: FakeLLM, worker: WorkerProcess
) -> None:
    instance = await create_instance(client, llm)
    session = await create_session(client, instance)
    agent = await client.post(f"/v1/sessions/{session['id']}/agents", json={"name": "writer"})
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    assert agent_id == f"{session['id']}.2"
    stream = await StreamCollector(client, f"/v1/agents/{agent_id}/events/stream").start()
    llm.script(Reply(text="Hello over the wire"), match="greet")

    turn = await send(client, agent_id, "greet me")
    await stream.wait_for(closing(turn["id"]))
    await stream.stop()

    done = await wait_turn(client, turn["id"])
    assert done["status"] == "completed" and done["output"] == "Hello over the wire"
    assert "error" not in done
    assert done["usage"]["output_tokens"] >= 0
    types = [e.event for e in stream.events if e.data["turn_id"] == turn["id"]]
    durable = [
        t for t in types if t not in ("agent_token", "agent_state", "usage", "agent_thinking")
    ]
    assert durable == [
        "system_prompt",
        "user_message",
        "turn_started",
        "agent_message",
        "turn_completed",
    ]
    assert types.index("agent_token") < types.index("agent_message")
    history = (await client.get(f"/v1/agents/{agent_id}/events")).json()
    assert [e["type"] for e in history["events"]] == durable
    assert [e["seq"] for e in history["events"]] == [int(e.id) for e in stream.durable()]


@pytest.mark.slow
async def test_two_workers_three_agents_thirty_messages(
    client: httpx.AsyncClient, llm: FakeLLM, start_worker: Callable[..., WorkerProcess]
) -> None:
    llm.configure(latency_s=0.02)
    for w in [start_worker(), start_worker()]:
        w.wait_ready()
    instance = await create_instance(client, llm)
    session = await create_session(client, instance)
    agents = [session["coordinator_agent_id"]]
    for name in ("second", "third"):
        resp = await client.post(f"/v1/sessions/{session['id']}/agents", json={"name": name})
        agents.append(resp.json()["id"])
    stream = await StreamCollector(client, f"/v1/sessions/{session['id']}/events/stream").start()

    rng = random.Random(7)
    plan = [(rng.choice(agents), f"message {i:02d}") for i in range(30)]
    turns = await asyncio.gather(*(send(client, agent, text) for agent, text in plan))
    await stream.wait_for(
        lambda events: sum(e.event == "turn_completed" for e in events) == 30, timeout_s=60
    )
    await stream.stop()

    finished = [await wait_turn(client, t["id"]) for t in turns]
    assert {t["status"] for t in finished} == {"completed"}
    cursors = [int(e.id) for e in stream.durable()]
    assert cursors == list(range(1, len(cursors) + 1))  # every durable event once, in order
    per_agent: dict[str, list[str]] = defaultdict(list)
    for e in stream.durable():
        if e.event == "user_message":
            per_agent[e.data["agent_id"]].append(e.data["data"]["content"])
    for agent in agents:
        sent = sorted((t for t in turns if t["agent_id"] == agent), key=lambda t: t["created_at"])
        history = (await client.get(f"/v1/agents/{agent}/events", params={"limit": 1000})).json()
        users = [e["data"]["content"] for e in history["events"] if e["type"] == "user_message"]
        assert users == per_agent[agent]
        assert sorted(users) == sorted(t["input"] for t in sent)
        positions = {
            t["id"]: i for i, t in enumerate(sorted(finished, key=lambda t: t["started_at"]))
        }
        assert [e["turn_id"] for e in history["events"] if e["type"] == "user_message"] == sorted(
            [t["id"] for t in finished if t["agent_id"] == agent], key=positions.__getitem__
        )


async def test_approval_continues_on_another_worker(
    client: httpx.AsyncClient,
    llm: FakeLLM,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    first = start_worker().wait_ready()
    instance = await create_instance(client, llm)
    session = await create_session(client, instance, working_directory=str(tmp_path / "ws"))
    agent_id = session["coordinator_agent_id"]
    llm.script(Reply(tool_calls=[("file_write", {"path": "a.txt", "content": "A"})]), match="one")
    llm.script(Reply(tool_calls=[("file_write", {"path": "b.txt", "content": "B"})]), match="two")

    turn = await send(client, agent_id, "write one")
    assert (await wait_turn(client, turn["id"]))["status"] == "awaiting_approval"
    pending = (await client.get(f"/v1/sessions/{session['id']}/approvals")).json()["approvals"]
    assert [(p["tool"], p["arguments"]["path"]) for p in pending] == [("file_write", "a.txt")]
    first.terminate()
    second = start_worker().wait_ready()

    call_id = pending[0]["tool_call_id"]
    decided = await client.post(
        f"/v1/agents/{agent_id}/approvals/{call_id}", json={"decision": "allow_once"}
    )
    assert decided.status_code == 202, decided.text
    again = await client.post(
        f"/v1/agents/{agent_id}/approvals/{call_id}", json={"decision": "deny"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "approval_already_decided"
    done = await wait_turn(client, turn["id"])
    assert done["status"] == "completed"
    assert (tmp_path / "ws" / "a.txt").read_text() == "A"
    assert second.proc.poll() is None

    denied_turn = await send(client, agent_id, "write two")
    assert (await wait_turn(client, denied_turn["id"]))["status"] == "awaiting_approval"
    [request] = (await client.get(f"/v1/sessions/{session['id']}/approvals")).json()["approvals"]
    await client.post(
        f"/v1/agents/{agent_id}/approvals/{request['tool_call_id']}", json={"decision": "deny"}
    )
    assert (await wait_turn(client, denied_turn["id"]))["status"] == "completed"
    assert not (tmp_path / "ws" / "b.txt").exists()
    events = (await client.get(f"/v1/agents/{agent_id}/events")).json()["events"]
    results = [e["data"]["status"] for e in events if e["type"] == "tool_result"]
    assert results == ["completed", "denied"]


async def test_cancel_mid_stream_keeps_partial_text(
    client: httpx.AsyncClient, llm: FakeLLM, worker: WorkerProcess
) -> None:
    instance = await create_instance(client, llm)
    session = await create_session(client, instance)
    agent_id = session["coordinator_agent_id"]
    stream = await StreamCollector(client, f"/v1/agents/{agent_id}/events/stream").start()
    words = " ".join(f"w{i}" for i in range(200))
    llm.script(Reply(text=words, token_delay_s=0.05))
    turn = await send(client, agent_id, "stream a lot")
    await stream.wait_for(lambda events: any(e.event == "agent_token" for e in events))

    started = asyncio.get_running_loop().time()
    resp = await client.post(f"/v1/turns/{turn['id']}/cancel")
    assert resp.status_code == 202
    await stream.wait_for(closing(turn["id"]), timeout_s=5)
    elapsed = asyncio.get_running_loop().time() - started
    await stream.stop()

    assert elapsed < 1.0
    done = await wait_turn(client, turn["id"])
    assert done["status"] == "cancelled"
    partial = [e for e in stream.events if e.event == "agent_message"]
    assert partial and partial[-1].data["data"]["partial"] is True
    again = await client.post(f"/v1/turns/{turn['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "turn_not_cancellable"


async def test_provider_switch_between_turns(
    client: httpx.AsyncClient, llm: FakeLLM, worker: WorkerProcess
) -> None:
    anthropic = await create_instance(client, llm, "anthropic")
    openai = await create_instance(client, llm, "openai")
    session = await create_session(client, anthropic)
    agent_id = session["coordinator_agent_id"]
    first = await wait_turn(client, (await send(client, agent_id, "first"))["id"])

    patched = await client.patch(
        f"/v1/agents/{agent_id}", json={"provider_instance_id": openai, "model_id": "gpt-4o"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["provider_instance_id"] == openai
    second = await wait_turn(client, (await send(client, agent_id, "second"))["id"])

    assert first["status"] == second["status"] == "completed"
    assert [r.path for r in llm.requests] == ["/v1/messages", "/v1/chat/completions"]


async def test_deleted_instance_fails_turn_visibly(
    client: httpx.AsyncClient, llm: FakeLLM, worker: WorkerProcess, api_server: ApiProcess
) -> None:
    instance = await create_instance(client, llm)
    session = await create_session(client, instance)
    agent_id = session["coordinator_agent_id"]
    stream = await StreamCollector(client, f"/v1/agents/{agent_id}/events/stream").start()
    assert (await client.delete(f"/v1/provider-instances/{instance}")).status_code in (200, 204)

    turn = await send(client, agent_id, "hello?")
    await stream.wait_for(closing(turn["id"]))
    await stream.stop()

    failed = await wait_turn(client, turn["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "provider_instance_not_found"
    [event] = [e for e in stream.events if e.event == "turn_failed"]
    assert event.data["data"]["code"] == "provider_instance_not_found"
