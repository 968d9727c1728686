"""The process's HTTP connection pools: every provider and tool of the process shares them.

httpcore scans every connection of a pool when it assigns a request and when
a response closes (``has_expired`` polls each socket), so one pool's cost per
request grows with its connections: with 400 turns in flight, one pool of 400
took a fifth of a worker's CPU. The process holds ceil(concurrency / 5)
pools instead and hands them out in turn; connections are still reused across
turns, and each pool keeps at most its share of the concurrency alive.
"""

from __future__ import annotations

import itertools
import math

import httpx2

CONNECTIONS_PER_POOL = 5
TIMEOUT = httpx2.Timeout(60.0, connect=10.0)


class HttpPools:
    def __init__(self, concurrency: int) -> None:
        count = max(1, math.ceil(concurrency / CONNECTIONS_PER_POOL))
        share = math.ceil(concurrency / count)
        # A pool never makes a request wait (that is the concurrency's job); it only
        # bounds the connections it keeps open between requests.
        limits = httpx2.Limits(
            max_connections=concurrency + 10, max_keepalive_connections=share + 10
        )
        self._clients = [httpx2.AsyncClient(limits=limits, timeout=TIMEOUT) for _ in range(count)]
        self._next = itertools.cycle(self._clients)

    def client(self) -> httpx2.AsyncClient:
        """The next pool, round robin: consecutive turns spread evenly over the pools."""
        return next(self._next)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def __aenter__(self) -> HttpPools:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
