"""A small SSE client for tests: reads ``event``/``id``/``data`` frames off an httpx stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str
    id: str
    data: dict[str, Any]


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield SseEvent(
                    fields.get("event", ""), fields.get("id", ""), json.loads(fields["data"])
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


class StreamCollector:
    """Collects a stream's events in the background until ``stop()``."""

    def __init__(self, client: httpx.AsyncClient, url: str, last_event_id: str | None = None):
        self.client, self.url = client, url
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.events: list[SseEvent] = []
        self.opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> StreamCollector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def _run(self) -> None:
        async with self.client.stream("GET", self.url, headers=self.headers, timeout=None) as resp:
            resp.raise_for_status()
            self.opened.set()
            async for event in read_events(resp):
                self.events.append(event)

    def durable(self) -> list[SseEvent]:
        return [e for e in self.events if "." not in e.id]

    async def wait_for(self, predicate: Any, timeout_s: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self.events):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"stream {self.url}: condition not met; got {len(self.events)}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task
