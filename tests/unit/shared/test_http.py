"""The process's HTTP pools: small pools handed out in turn, connections reused."""

from __future__ import annotations

import asyncio

from shared.http import CONNECTIONS_PER_POOL, HttpPools
from tests.fakellm import FakeLLM
from tests.fakellm.fixtures import fake_llm, fake_llm_server

__all__ = ["fake_llm", "fake_llm_server"]


async def _get(pools: HttpPools, llm: FakeLLM) -> None:
    response = await pools.client().get(llm.base_url + "/v1/models", headers={"x-api-key": "k"})
    assert response.status_code == 200


async def test_sequential_requests_reuse_one_connection_per_pool(fake_llm: FakeLLM) -> None:
    async with HttpPools(3 * CONNECTIONS_PER_POOL) as pools:
        before = fake_llm.connections_accepted
        for _ in range(30):
            await _get(pools, fake_llm)
        assert fake_llm.connections_accepted - before == 3  # round robin over 3 pools


async def test_concurrent_requests_never_open_more_connections_than_the_concurrency(
    fake_llm: FakeLLM,
) -> None:
    concurrency = 2 * CONNECTIONS_PER_POOL
    fake_llm.configure(latency_s=0.05)
    async with HttpPools(concurrency) as pools:
        before = fake_llm.connections_accepted
        for _ in range(3):
            await asyncio.gather(*(_get(pools, fake_llm) for _ in range(concurrency)))
        assert fake_llm.connections_accepted - before <= concurrency
