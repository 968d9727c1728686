"""Provider faults from the fake LLM server, through a real worker process and the HTTP API:
retried within limits, then a clear failure code on the turn.

(``tests/integration/shared/test_agent_turns.py`` drives the same faults through the
domain in process; this is the deployed shape: worker process, retry policy, API.)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.chaos.conftest import MakeCluster, api_client
from tests.e2e.flows import create_session, send, wait_turn
from tests.fakellm import Reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
MAX_CALLS = 4  # RetryPolicy().max_attempts: the first call and three retries


@dataclass
class Fault:
    marker: str
    replies: list[tuple[Reply, int | None]]  # (reply, times)
    status: str
    code: str | None
    calls: int  # model requests the turn makes
    min_s: float = 0.0  # the turn cannot have been faster (Retry-After)


FAULTS = [
    Fault("rate-once", [(Reply(error_status=429, error_headers={"retry-after": "2"}), 1)],
          "completed", None, 2, min_s=2.0),
    Fault("rate-always", [(Reply(error_status=429, error_headers={"retry-after": "0"}), None)],
          "failed", "provider_rate_limited", MAX_CALLS),
    Fault("burst", [(Reply(error_status=500), 2), (Reply(error_status=503), 1)],
          "completed", None, 4),
    Fault("down", [(Reply(error_status=503), None)], "failed", "provider_error", MAX_CALLS),
    Fault("cut-late", [(Reply(text="one two three four five six", cut_after_chunks=3), None)],
          "failed", "provider_error", 1),
    Fault("cut-early", [(Reply(text="never seen", cut_after_chunks=0), 1)], "completed", None, 2),
    Fault("hang", [(Reply(hang=True), None)], "failed", "provider_unreachable", MAX_CALLS),
    Fault("malformed", [(Reply(text="bad json", malformed=True), None)],
          "failed", "provider_error", MAX_CALLS),
    Fault("auth", [(Reply(error_status=401), None)], "failed", "provider_auth_failed", 1),
]  # fmt: skip


async def test_provider_faults_are_retried_within_limits_then_fail_with_a_code(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1)
    llm = cluster.llm
    assert llm is not None
    for fault in FAULTS:
        for reply, times in fault.replies:
            llm.script(reply, match=f"[{fault.marker}]", times=times)
    async with api_client(cluster) as client:
        resp = await client.post(
            "/v1/provider-instances",
            json={
                "name": "flaky",
                "catalog_provider_id": "anthropic",
                "base_url": llm.base_url,
                "timeout_s": 1.5,  # a hang past it is provider_unreachable
                "credential": {"api_key": "sk-faults"},
            },
        )
        session = await create_session(client, resp.json()["id"])
        agents = [session["coordinator_agent_id"]]
        for fault in FAULTS[1:]:
            created = await client.post(
                f"/v1/sessions/{session['id']}/agents", json={"name": fault.marker}
            )
            agents.append(created.json()["id"])
        turns = await asyncio.gather(
            *(
                send(client, agent, f"[{f.marker}] hello")
                for agent, f in zip(agents, FAULTS, strict=True)
            )
        )
        done = [await wait_turn(client, t["id"], timeout_s=60) for t in turns]
        events = {
            agent: (await client.get(f"/v1/agents/{agent}/events")).json()["events"]
            for agent in agents
        }
    calls = _calls_per_marker(await asyncio.to_thread(llm.requests))

    for fault, agent, turn in zip(FAULTS, agents, done, strict=True):
        got = (turn["status"], turn.get("error", {}).get("code"), calls.get(fault.marker, 0))
        assert got == (fault.status, fault.code, fault.calls), fault.marker
        took_s = (_at(turn["finished_at"]) - _at(turn["started_at"])).total_seconds()
        assert took_s >= fault.min_s, (fault.marker, took_s)
        closing = [
            e
            for e in events[agent]
            if e["type"].startswith("turn_") and e["type"] != "turn_started"
        ]
        assert len(closing) == 1 and closing[0]["data"].get("code") == fault.code, fault.marker
        print(f"figure: provider {fault.marker}: {got} in {took_s:.1f} s")
    cut = [e for e in events[agents[4]] if e["type"] == "agent_message"]
    assert [e["data"] for e in cut] == [{"content": "one two three ", "partial": True}]


def _calls_per_marker(requests: list[dict[str, Any]]) -> dict[str, int]:
    calls: dict[str, int] = {}
    for request in requests:
        body = json.dumps(request.get("body"))
        for fault in FAULTS:
            if f"[{fault.marker}]" in body:
                calls[fault.marker] = calls.get(fault.marker, 0) + 1
    return calls


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
