"""Fixtures of the fault tests: a whole cluster per test, stopped (every process) afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.models import Turn
from shared.turns import get_turn
from tests.chaos.cluster import Cluster, ClusterOptions
from tests.e2e.flows import create_instance, create_session

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """``make_cluster(workers=1, **ClusterOptions)``: started now, stopped after the test."""
    clusters: list[Cluster] = []

    def make(workers: int = 1, **options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(clusters)}", ClusterOptions(**options))
        clusters.append(cluster)
        return cluster.start(workers)

    yield make
    for cluster in clusters:
        cluster.stop()


@asynccontextmanager
async def api_client(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    assert cluster.api is not None
    async with httpx.AsyncClient(
        base_url=cluster.api.url, headers=cluster.api.headers, timeout=30
    ) as client:
        yield client


async def new_agents(
    client: httpx.AsyncClient,
    cluster: Cluster,
    count: int = 1,
    *,
    policies: dict[str, str] | None = None,
    working_directory: str | None = None,
) -> list[str]:
    """``count`` agents of one new session on the cluster's fake LLM (Anthropic wire)."""
    assert cluster.llm is not None
    instance = await create_instance(client, cluster.llm)  # type: ignore[arg-type]
    session = await create_session(
        client, instance, policies=policies, working_directory=working_directory
    )
    agents = [session["coordinator_agent_id"]]
    for n in range(1, count):
        resp = await client.post(f"/v1/sessions/{session['id']}/agents", json={"name": f"a{n}"})
        assert resp.status_code == 201, resp.text
        agents.append(resp.json()["id"])
    return agents


async def turn_row(cluster: Cluster, turn_id: str) -> Turn:
    return await asyncio.to_thread(cluster.db.read_sync, get_turn, turn_id)


async def wait_row(
    cluster: Cluster, turn_id: str, predicate: Callable[[Turn], bool], timeout_s: float = 30
) -> Turn:
    """Poll the turn's row in the database until ``predicate`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        turn = await turn_row(cluster, turn_id)
        if predicate(turn):
            return turn
        assert loop.time() < deadline, f"turn {turn_id}: still {turn.status} ({turn.worker_id})"
        await asyncio.sleep(0.05)


def running_on(pid: int) -> Callable[[Turn], bool]:
    """The turn runs on the worker process ``pid`` (worker ids end with ``:<pid>``)."""
    return lambda turn: turn.status == "running" and (turn.worker_id or "").endswith(f":{pid}")


async def wait_requests(cluster: Cluster, count: int, timeout_s: float = 30) -> None:
    """Wait until the fake LLM received ``count`` model requests in all."""
    assert cluster.llm is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (await asyncio.to_thread(cluster.llm.stats))["requests_served"] < count:
        assert loop.time() < deadline, f"the fake LLM did not get {count} requests"
        await asyncio.sleep(0.05)
