"""A canary API key stored as a credential never leaves the server: not in any HTTP answer,
SSE event, stored event or row, Redis message, log line or exception text, also when the
provider's errors echo the request's headers back.

(``tests/integration/shared/test_secrets.py`` checks the domain in process; this runs the
deployed shape: the key goes in through the API and the model calls run on a worker.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from tests.chaos.cluster import Cluster
from tests.chaos.conftest import MakeCluster
from tests.e2e.flows import create_session, send, wait_turn
from tests.fakellm import Reply
from tests.helpers import MODELS, base_url_for
from tests.sse import StreamCollector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CANARY = "sk-canary-4b7e1d9a2f6c8e03b5a7d1f9c2e4a6b8"
ECHOED_ERRORS = [401, 400, 403, 404, 408, 429, 500, 503]


async def test_canary_credential_appears_nowhere_even_when_providers_echo_headers(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=1)
    llm = cluster.llm
    assert llm is not None and cluster.api is not None
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return  # a stream: its events are collected below
        await response.aread()
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    for status in ECHOED_ERRORS:  # every error answer carries the request's headers
        llm.script(Reply(error_status=status, echo_headers=True), match=f"[{status}]", times=None)
    async with httpx.AsyncClient(
        base_url=cluster.api.url,
        headers=cluster.api.headers,
        timeout=60,
        event_hooks={"response": [record]},
    ) as client:
        turns, stream = await _converse_on_both_wires(client, cluster)
        await stream.stop()
        for instance in await _instances(client):
            await client.get(f"/v1/provider-instances/{instance}")
            await client.post(f"/v1/provider-instances/{instance}/test", json={})
        llm.configure(api_keys=["another-key"])  # the connectivity test is refused now
        for instance in await _instances(client):
            await client.post(f"/v1/provider-instances/{instance}/test", json={})
        await client.get("/metrics")

    received = await asyncio.to_thread(llm.requests)
    keys = [r["headers"].get("x-api-key") or r["headers"].get("authorization") for r in received]
    assert any(CANARY in (k or "") for k in keys)  # the key was really used on both wires
    codes = {t["error"]["code"] for t in turns if t["status"] == "failed"}
    assert {"provider_auth_failed", "provider_error", "provider_rate_limited"} <= codes
    assert any(t["status"] == "completed" for t in turns)
    echoed = [
        t["error"]["message"]
        for t in turns
        if "[redacted]" in t.get("error", {}).get("message", "")
    ]
    assert echoed  # the providers did echo the key back: the redaction is what stopped it
    places = {
        "HTTP answers": "\n".join(seen),
        "SSE events": json.dumps([e.data for e in stream.events]),
        "database": await asyncio.to_thread(_dump_database, cluster),
        **cluster.logs(),
    }
    assert len(stream.events) > 20 and len(seen) > 30
    leaks = [place for place, content in places.items() if CANARY in content]
    assert not leaks, f"the canary leaked into: {leaks}"
    assert not [p for p, c in places.items() if CANARY[3:20] in c]  # not even a fragment


async def _converse_on_both_wires(
    client: httpx.AsyncClient, cluster: Cluster
) -> tuple[list[dict[str, Any]], StreamCollector]:
    """A session on an Anthropic and an OpenAI instance keyed with the canary; every scripted
    error, then a good answer, on each."""
    assert cluster.llm is not None
    instances = []
    for kind in ("anthropic", "openai"):
        resp = await client.post(
            "/v1/provider-instances",
            json={
                "name": f"canary {kind}",
                "catalog_provider_id": kind,
                "base_url": base_url_for(cluster.llm, kind),  # type: ignore[arg-type]
                "timeout_s": 5,
                "credential": {"api_key": CANARY},
            },
        )
        assert resp.status_code == 201, resp.text
        instances.append(resp.json()["id"])
    session = await create_session(client, instances[0])
    stream = await StreamCollector(client, f"/v1/sessions/{session['id']}/events/stream").start()
    # One agent per message: a failed turn leaves its message unanswered, and the next
    # request would carry it (and match its script) again.
    plan = [(i, f"[{s}] fail with an echo") for i in instances for s in ECHOED_ERRORS]
    plan += [(i, "and now answer") for i in instances]
    agents = []
    for n, (instance, _) in enumerate(plan):
        model = MODELS["anthropic"] if instance == instances[0] else "gpt-4o"
        resp = await client.post(
            f"/v1/sessions/{session['id']}/agents",
            json={"name": f"a{n}", "provider_instance_id": instance, "model_id": model},
        )
        agents.append(resp.json()["id"])
    sent = [
        await send(client, agent, content) for agent, (_, content) in zip(agents, plan, strict=True)
    ]
    turns = [await wait_turn(client, t["id"], timeout_s=60) for t in sent]
    for agent in agents:
        await client.get(f"/v1/agents/{agent}/events", params={"limit": 10000})
        await client.get(f"/v1/agents/{agent}/turns")
    return turns, stream


async def _instances(client: httpx.AsyncClient) -> list[str]:
    return [
        i["id"] for i in (await client.get("/v1/provider-instances")).json()["provider_instances"]
    ]


def _dump_database(cluster: Cluster) -> str:
    """Every row of every table, as text."""

    def dump(session: Any) -> str:
        conn = session.connection()
        tables = inspect(conn).get_table_names()
        return "\n".join(
            repr(tuple(row))
            for table in tables
            for row in conn.execute(text(f'SELECT * FROM "{table}"'))
        )

    return cluster.db.read_sync(dump)
