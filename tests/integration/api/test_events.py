"""Durable events by page, and SSE streams: replay after Last-Event-ID, then live, lossless."""

from __future__ import annotations

import asyncio
import re

import pytest

from shared.events import Envelope
from shared.resources import open_resources
from shared.settings import Settings
from shared.sink import MemorySink
from shared.threads import events_after
from tests.fakellm import FakeLLM, Reply
from tests.helpers import run
from tests.integration.api.conftest import Api
from tests.integration.api.support import (
    SseEvent,
    SseReader,
    create_agent,
    durable,
    error_code,
    ok,
    run_turns,
    send,
)

TURN_TYPES = ["user_message", "turn_started", "agent_message", "turn_completed"]


async def one_turn(api: Api, agent_id: str) -> None:
    await send(api, agent_id, "hi")
    await run_turns(api, agent_id)


def assert_envelope(event: SseEvent, agent_id: str) -> None:
    assert set(event.data) >= {"type", "session_id", "agent_id", "turn_id", "data"}
    assert event.data["type"] == event.event and event.data["agent_id"] == agent_id
    if "." in event.id:
        assert "seq" not in event.data and "session_seq" not in event.data
    else:
        assert event.data["seq"] >= 1 and event.data["session_seq"] >= 1


async def test_events_page_by_after_and_limit(api: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(api, llm)
    await one_turn(api, agent_id)
    path = f"/v1/agents/{agent_id}/events"

    first = ok(await api.client.get(path, params={"limit": 2}))
    second = ok(await api.client.get(path, params={"after": 2, "limit": 2}))
    last = ok(await api.client.get(path, params={"cursor": second["next_cursor"], "limit": 2}))

    assert [e["seq"] for e in first["events"]] == [1, 2] and first["next_cursor"] == 2
    assert [e["seq"] for e in second["events"]] == [3, 4] and second["next_cursor"] == 4
    assert [e["seq"] for e in last["events"]] == [5] and last["next_cursor"] is None
    event = first["events"][1]
    assert event["type"] == "user_message" and event["data"] == {"content": "hi"}
    assert event["turn_id"] and event["created_at"].endswith("Z")
    assert set(event) >= {"seq", "type", "data", "created_at", "turn_id"}


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 10_001}, {"after": -1}, {"limit": "ten"}]
)
async def test_events_with_bad_after_or_limit_answer_422(
    api: Api, llm: FakeLLM, params: dict[str, object]
) -> None:
    agent_id = await create_agent(api, llm)
    response = await api.client.get(f"/v1/agents/{agent_id}/events", params=params)
    assert error_code(response, 422) == "invalid_request"


async def test_events_accept_the_largest_limit_and_answer_404_for_unknown_agents(
    api: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(api, llm)
    page = ok(await api.client.get(f"/v1/agents/{agent_id}/events", params={"limit": 10_000}))
    assert page == {"events": [], "next_cursor": None}
    response = await api.client.get("/v1/agents/ses_x.1/events")
    assert error_code(response, 404) == "agent_not_found"


async def test_agent_stream_replays_after_last_event_id_then_follows_live(
    server: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(server, llm)
    await one_turn(server, agent_id)
    path = f"/v1/agents/{agent_id}/events/stream"

    async with server.client.stream("GET", path, headers={"Last-Event-ID": "2"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        replayed = await reader.take(3)
        llm.script(Reply(text="streamed in three words"))
        await one_turn(server, agent_id)
        live = await reader.until("turn_completed")

    assert [e.id for e in replayed] == ["3", "4", "5"]
    assert [e.event for e in replayed] == ["turn_started", "agent_message", "turn_completed"]
    assert [e.id for e in durable(live)] == ["6", "7", "8", "9"]
    assert [e.event for e in durable(live)] == TURN_TYPES
    tokens = [e for e in live if e.event == "agent_token"]
    assert "".join(e.data["data"]["text"] for e in tokens) == "streamed in three words"
    for event in live:
        assert_envelope(event, agent_id)
        assert re.fullmatch(r"\d+|\d+\.\d+", event.id)
    ephemeral_ids = [e.id for e in live if "." in e.id]
    assert ephemeral_ids and all(i.split(".")[1] != "0" for i in ephemeral_ids)


async def test_session_stream_without_last_event_id_carries_only_what_follows(
    server: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(server, llm)
    await one_turn(server, agent_id)
    session_id = agent_id.rsplit(".", 1)[0]

    async with server.client.stream("GET", f"/v1/sessions/{session_id}/events/stream") as resp:
        reader = SseReader(resp)
        await one_turn(server, agent_id)
        live = await reader.until("turn_completed")

    assert [e.id for e in durable(live)] == ["6", "7", "8", "9"]
    assert durable(live)[0].data["session_seq"] == 6


async def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(
    server: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(server, llm)
    session_id = agent_id.rsplit(".", 1)[0]
    for _ in range(3):
        await one_turn(server, agent_id)  # 5 + 4 + 4 durable events
    path = f"/v1/sessions/{session_id}/events/stream"

    seen: list[str] = []
    last = "0"
    for _ in range(4):
        async with server.client.stream("GET", path, headers={"Last-Event-ID": last}) as resp:
            got = await SseReader(resp).take(3)
        seen += [e.id for e in got]
        last = got[-1].id
    async with server.client.stream("GET", path, headers={"Last-Event-ID": f"{last}.7"}) as resp:
        seen.append((await SseReader(resp).next()).id)

    assert seen == [str(n) for n in range(1, 14)]


@pytest.mark.parametrize("bad", ["abc", "-1", "1.x", "1.2.3", "99999999999999999999", ""])
async def test_malformed_last_event_id_answers_400_invalid_cursor(
    api: Api, llm: FakeLLM, bad: str
) -> None:
    agent_id = await create_agent(api, llm)
    session_id = agent_id.rsplit(".", 1)[0]
    for path in (f"/v1/agents/{agent_id}", f"/v1/sessions/{session_id}"):
        response = await api.client.get(f"{path}/events/stream", headers={"Last-Event-ID": bad})
        assert error_code(response, 400) == "invalid_cursor"


async def test_stream_backfills_events_that_never_reached_redis(
    server: Api, llm: FakeLLM, settings: Settings
) -> None:
    agent_id = await create_agent(server, llm)
    path = f"/v1/agents/{agent_id}/events/stream"
    quiet = await open_resources(settings, sink=MemorySink(), concurrency=5)
    try:
        async with server.client.stream("GET", path) as response:
            reader = SseReader(response)
            await send(server, agent_id, "hi")
            await run(quiet, agent_id)  # committed, published nowhere the stream listens
            rows = await quiet.db.read(events_after, agent_id, 0, 100)
            await server.resources.sink.publish([rows[-1].envelope()])
            got = await reader.take(5)
    finally:
        await quiet.aclose()

    assert [e.id for e in got] == ["1", "2", "3", "4", "5"]
    assert got[0].event == "system_prompt" and got[-1].event == "turn_completed"


async def test_stream_drops_durable_events_it_already_sent(server: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(server, llm)
    await one_turn(server, agent_id)
    rows = await server.resources.db.read(events_after, agent_id, 0, 100)
    path = f"/v1/agents/{agent_id}/events/stream"

    async with server.client.stream("GET", path, headers={"Last-Event-ID": "0"}) as response:
        reader = SseReader(response)
        replayed = await reader.take(5)
        republished = [row.envelope() for row in rows]  # as a new lease holder would
        await server.resources.sink.publish(republished)
        await one_turn(server, agent_id)
        live = await reader.until("turn_completed")

    assert [e.id for e in replayed] == ["1", "2", "3", "4", "5"]
    assert [e.id for e in durable(live)] == ["6", "7", "8", "9"]


async def test_ephemeral_events_get_ids_after_the_last_durable_one(
    server: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(server, llm)
    await one_turn(server, agent_id)
    session_id = agent_id.rsplit(".", 1)[0]

    def state(value: str) -> Envelope:
        return Envelope.ephemeral(
            "agent_state", session_id=session_id, agent_id=agent_id, turn_id=None, state=value
        )

    async with server.client.stream("GET", f"/v1/agents/{agent_id}/events/stream") as response:
        reader = SseReader(response)
        await server.resources.sink.publish([state("thinking"), state("idle")])
        got = await reader.take(2)

    assert [(e.id, e.event) for e in got] == [("5.1", "agent_state"), ("5.2", "agent_state")]
    assert got[0].data["data"] == {"state": "thinking"} and got[0].data["turn_id"] is None


async def test_agent_stream_carries_only_its_agent(server: Api, llm: FakeLLM) -> None:
    agent_id = await create_agent(server, llm)
    session_id = agent_id.rsplit(".", 1)[0]
    sibling = ok(
        await server.client.post(f"/v1/sessions/{session_id}/agents", json={"name": "b"}), 201
    )["id"]

    async with server.client.stream("GET", f"/v1/agents/{agent_id}/events/stream") as response:
        reader = SseReader(response)
        await one_turn(server, sibling)
        await one_turn(server, agent_id)
        got = await reader.until("turn_completed")

    assert {e.data["agent_id"] for e in got} == {agent_id}
    assert [e.id for e in durable(got)] == ["1", "2", "3", "4", "5"]


async def test_stream_sends_keep_alives_and_unsubscribes_when_the_client_leaves(
    server: Api, llm: FakeLLM
) -> None:
    agent_id = await create_agent(server, llm)
    hub = server.state.hub

    async with server.client.stream("GET", f"/v1/agents/{agent_id}/events/stream") as response:
        assert hub.active_streams == 1
        reader = SseReader(response)
        await asyncio.sleep(1.0)
        await one_turn(server, agent_id)
        await reader.until("turn_completed")
        assert reader.comments >= 3  # the opening comment and keep-alives
    async with asyncio.timeout(3):
        while hub.active_streams:
            await asyncio.sleep(0.02)


async def test_stream_of_unknown_agent_or_session_answers_404(api: Api) -> None:
    response = await api.client.get("/v1/agents/ses_x.1/events/stream")
    assert error_code(response, 404) == "agent_not_found"
    response = await api.client.get("/v1/sessions/ses_x/events/stream")
    assert error_code(response, 404) == "session_not_found"
