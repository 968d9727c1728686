"""What the API process holds while it runs, made by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from celery import Celery

from shared.bus import EventHub
from shared.queue import KickSender
from shared.resources import Resources

log = logging.getLogger(__name__)


class Kicker:
    """Sends kicks after a commit, without holding an answer long on a broker that is away.

    A kick is awaited up to ``wait_s`` and otherwise finishes in the background:
    the turn is durable either way, and the sweeper kicks it if the kick is lost.
    Kicks go through one KickSender (``KickSender.send_kick``: at most one kick per
    agent on its way), which owns the Celery app and its Redis client.
    """

    def __init__(self, celery: Celery, wait_s: float = 1.0) -> None:
        self._sender = KickSender(celery)
        self._wait_s = wait_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def kick(self, *agent_ids: str) -> None:
        """Kick each agent; call after the transaction that queued their work committed."""
        if not agent_ids:
            return
        task = asyncio.create_task(self._send(agent_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self._wait_s)

    async def _send(self, agent_ids: tuple[str, ...]) -> None:
        await asyncio.to_thread(self._send_all, agent_ids)  # one thread hop for them all

    def _send_all(self, agent_ids: tuple[str, ...]) -> None:
        for agent_id in agent_ids:
            self._sender.send_kick(agent_id)

    async def aclose(self, timeout_s: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)
        self._sender.close()


@dataclass
class ApiState:
    resources: Resources
    hub: EventHub
    kicker: Kicker
    auth: bool
    keepalive_s: float
    holder: str
