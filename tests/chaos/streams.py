"""An SSE client that survives faults: it reconnects with ``Last-Event-ID``, as browsers do,
and keeps every durable cursor it received so duplicates and gaps can be counted."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx

from tests.sse import read_events

RECONNECT_DELAY_S = 0.5


class _StreamRefused(Exception):
    pass


@dataclass
class FollowedStream:
    """Follows ``url`` from cursor 0 until ``stop()``, reconnecting after every failure."""

    client: httpx.AsyncClient
    url: str
    cursors: list[int] = field(default_factory=list)
    ephemeral: int = 0
    reconnects: int = 0
    refusals: dict[int, int] = field(default_factory=dict)  # status -> count
    _task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        return self.cursors[-1] if self.cursors else 0

    def start(self) -> FollowedStream:
        self._task = asyncio.create_task(self._run(), name=f"follow {self.url}")
        return self

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, _StreamRefused):
                await self._follow_once()
            self.reconnects += 1
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _follow_once(self) -> None:
        headers = {"Last-Event-ID": str(max(self.cursors, default=0))}
        timeout = httpx.Timeout(10.0, read=40.0)  # keep-alives come every 15 s
        async with self.client.stream("GET", self.url, headers=headers, timeout=timeout) as resp:
            if resp.status_code != 200:
                self.refusals[resp.status_code] = self.refusals.get(resp.status_code, 0) + 1
                await resp.aread()
                raise _StreamRefused(resp.status_code)
            async for event in read_events(resp):
                if "." in event.id:
                    self.ephemeral += 1
                else:
                    self.cursors.append(int(event.id))

    async def wait_for(self, cursor: int, timeout_s: float) -> bool:
        """True once the stream delivered ``cursor`` (or later), False after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while max(self.cursors, default=0) < cursor:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task

    def check(self, head: int) -> tuple[int, int]:
        """(duplicates, gaps) against the durable cursors 1..head the stream should carry."""
        seen: set[int] = set()
        duplicates = 0
        previous = 0
        for cursor in self.cursors:
            if cursor in seen or cursor <= previous:
                duplicates += 1
            seen.add(cursor)
            previous = max(previous, cursor)
        gaps = len(set(range(1, head + 1)) - seen)
        return duplicates, gaps
