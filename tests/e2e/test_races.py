"""Races a client can start, over real HTTP: every answer given is a promise kept.

- Retries with one ``Idempotency-Key`` in parallel answer the one turn's 202 (or 409
  ``idempotency_key_reused`` for another body), never a 5xx.
- A cancel answered 202 ends the turn ``cancelled``, whatever raced it: a decision on
  its approval, or its own completion; a decision that lost to a cancel answers 409
  ``turn_cancelled`` and its tool never runs.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ON_BOTH_DATABASES
from tests.e2e.flows import create_instance, create_session, send, wait_turn
from tests.fakellm import FakeLLM, Reply
from tests.processes import WorkerProcess

RACES = 50
FINAL = ("completed", "failed", "cancelled")


async def _agents(client: httpx.AsyncClient, session_id: str, count: int) -> list[str]:
    created = await asyncio.gather(
        *(
            client.post(f"/v1/sessions/{session_id}/agents", json={"name": f"racer {i}"})
            for i in range(count)
        )
    )
    assert all(r.status_code == 201 for r in created), [r.text for r in created]
    return [r.json()["id"] for r in created]


async def _events(client: httpx.AsyncClient, agent_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/agents/{agent_id}/events", params={"limit": 10000})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def _assert_well_formed(events: list[dict[str, Any]], turn_id: str, status: str) -> None:
    """One closing event matching the status, last; each call with exactly one result."""
    mine = [e for e in events if e["turn_id"] == turn_id]
    closings = [
        e["type"] for e in mine if e["type"].startswith("turn_") and e["type"] != "turn_started"
    ]
    assert closings == [f"turn_{status}"], closings
    assert mine[-1]["type"] == f"turn_{status}"
    calls = sorted(e["data"]["tool_call_id"] for e in mine if e["type"] == "tool_call")
    results = sorted(e["data"]["tool_call_id"] for e in mine if e["type"] == "tool_result")
    assert calls == results


async def test_parallel_retries_with_one_key_answer_one_turn(
    client: httpx.AsyncClient, llm: FakeLLM
) -> None:
    session = await create_session(client, await create_instance(client, llm))
    agent_id = session["coordinator_agent_id"]

    for round_no in range(10):
        key = f"retry-{round_no}"
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/agents/{agent_id}/messages",
                    json={"content": f"message {round_no}"},
                    headers={"Idempotency-Key": key},
                )
                for _ in range(20)
            )
        )
        assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers]
        assert len({a.json()["turn"]["id"] for a in answers}) == 1

    turns = (await client.get(f"/v1/agents/{agent_id}/turns")).json()["turns"]
    assert len(turns) == 10


async def test_parallel_requests_with_one_key_and_two_bodies_get_202_or_409(
    client: httpx.AsyncClient, llm: FakeLLM
) -> None:
    session = await create_session(client, await create_instance(client, llm))
    agent_id = session["coordinator_agent_id"]

    for round_no in range(10):
        bodies = [f"body A {round_no}", f"body B {round_no}"] * 10
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/agents/{agent_id}/messages",
                    json={"content": body},
                    headers={"Idempotency-Key": f"twice-{round_no}"},
                )
                for body in bodies
            )
        )
        codes = [a.status_code for a in answers]
        assert set(codes) <= {202, 409}, [a.text for a in answers]
        accepted = {
            (a.json()["turn"]["id"], a.json()["turn"]["input"])
            for a in answers
            if a.status_code == 202
        }
        assert len(accepted) == 1
        [(_, winner)] = accepted
        for body, answer in zip(bodies, answers, strict=True):
            if body == winner:
                assert answer.status_code == 202
            else:
                assert answer.status_code == 409
                assert answer.json()["error"]["code"] == "idempotency_key_reused"


def _duration_s(turn: dict[str, Any]) -> float:
    created, finished = (datetime.fromisoformat(turn[k]) for k in ("created_at", "finished_at"))
    return (finished - created).total_seconds()


async def _settled(client: httpx.AsyncClient, turn_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        turn = (await client.get(f"/v1/turns/{turn_id}", params={"wait_s": 5})).json()
        if turn["status"] in FINAL:
            return dict(turn)
        assert asyncio.get_running_loop().time() < deadline, turn
        await asyncio.sleep(0.05)


@pytest.mark.slow
@ON_BOTH_DATABASES
async def test_cancel_racing_a_decision_is_kept_and_a_late_decision_runs_nothing(
    client: httpx.AsyncClient,
    llm: FakeLLM,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    start_worker(concurrency=RACES).wait_ready()
    workdir = tmp_path / "race"
    session = await create_session(
        client, await create_instance(client, llm), working_directory=str(workdir)
    )
    agents = await _agents(client, session["id"], RACES)
    for i in range(RACES):
        llm.script(
            Reply(tool_calls=[("file_write", {"path": f"note-{i}.txt", "content": "x"})]),
            match=f"write note {i}.",
        )
    turns = [await send(client, agent, f"write note {i}.") for i, agent in enumerate(agents)]
    for turn in turns:
        assert (await wait_turn(client, turn["id"]))["status"] == "awaiting_approval"
    approvals = (await client.get(f"/v1/sessions/{session['id']}/approvals?limit=1000")).json()
    call_of = {a["turn_id"]: a["tool_call_id"] for a in approvals["approvals"]}
    rng = random.Random(15)

    async def race(agent_id: str, turn_id: str) -> tuple[httpx.Response, httpx.Response]:
        async def cancel() -> httpx.Response:
            await asyncio.sleep(rng.uniform(0, 0.01))
            return await client.post(f"/v1/turns/{turn_id}/cancel")

        async def decide() -> httpx.Response:
            await asyncio.sleep(rng.uniform(0, 0.01))
            return await client.post(
                f"/v1/agents/{agent_id}/approvals/{call_of[turn_id]}",
                json={"decision": "allow_once"},
            )

        cancelled, decided = await asyncio.gather(cancel(), decide())
        return cancelled, decided

    answers = await asyncio.gather(*(race(a, t["id"]) for a, t in zip(agents, turns, strict=True)))

    outcomes: dict[str, int] = {}
    for i, (agent_id, turn, (cancelled, decided)) in enumerate(
        zip(agents, turns, answers, strict=True)
    ):
        final = await _settled(client, turn["id"])
        ran = (workdir / f"note-{i}.txt").exists()
        key = f"cancel {cancelled.status_code}, decision {decided.status_code}"
        outcomes[key] = outcomes.get(key, 0) + 1
        assert cancelled.status_code in (202, 409), cancelled.text
        assert decided.status_code in (202, 409), decided.text
        if cancelled.status_code == 202:
            assert final["status"] == "cancelled", (key, final)
        else:
            assert cancelled.json()["error"]["code"] == "turn_not_cancellable"
            assert decided.status_code == 202 and final["status"] == "completed", (key, final)
        if decided.status_code == 409:
            assert decided.json()["error"]["code"] == "turn_cancelled", decided.text
            assert not ran, f"{key}: the tool ran after its decision was refused"
        _assert_well_formed(await _events(client, agent_id), turn["id"], final["status"])
    print(f"cancel vs decision, {RACES} races: {outcomes}")


@pytest.mark.slow
@ON_BOTH_DATABASES
async def test_cancel_racing_completion_is_kept_or_refused(
    client: httpx.AsyncClient, llm: FakeLLM, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(concurrency=RACES).wait_ready()
    session = await create_session(client, await create_instance(client, llm))
    agents = await _agents(client, session["id"], RACES)
    answer = "a short answer that ends now"
    llm.script(Reply(text=answer, token_delay_s=0.005), times=None)
    # Warm turns measure how long one takes here, from its 202 to its end; then each
    # race (one at a time, so they take as long) cancels about when its turn ends.
    warm = [await _settled(client, (await send(client, a, "warm up"))["id"]) for a in agents]
    took_s = statistics.median(_duration_s(turn) for turn in warm[-10:])
    rng = random.Random(16)
    answers = []
    for agent_id in agents:
        turn = await send(client, agent_id, "answer briefly")
        await asyncio.sleep(max(0.0, took_s + rng.uniform(-0.015, 0.005)))
        answers.append((turn, await client.post(f"/v1/turns/{turn['id']}/cancel")))

    outcomes: dict[str, int] = {}
    for agent_id, (turn, cancelled) in zip(agents, answers, strict=True):
        final = await _settled(client, turn["id"])
        key = f"cancel {cancelled.status_code}, {final['status']}"
        outcomes[key] = outcomes.get(key, 0) + 1
        if cancelled.status_code == 202:
            assert final["status"] == "cancelled", (cancelled.text, final)
            assert answer.startswith(final.get("output") or "")  # the text so far is kept
        else:
            assert cancelled.status_code == 409, cancelled.text
            assert cancelled.json()["error"]["code"] == "turn_not_cancellable"
            assert final["status"] == "completed", final
        _assert_well_formed(await _events(client, agent_id), turn["id"], final["status"])
    print(f"cancel vs completion, {RACES} races: {outcomes}")
