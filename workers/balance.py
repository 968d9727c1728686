"""Evening out agents between workers: a backlog goes back to the queue when a peer is lighter.

A holder that finds another open turn after its release runs it in the same
kick (docs/decisions.md): a kick through Celery costs more than a turn. The
price is that an agent's backlog stays on the worker that took its first
kick, so a burst whose first kicks split unevenly ends on one worker while
the others idle. Each worker posts how many agents it carries to one Redis
hash every ``POST_INTERVAL_S`` and reads its peers' loads in the same round
trip. A holder whose worker carries clearly more agents than the lightest
live peer with room (two, and a quarter of its own) kicks its agent through
the queue instead of running the next turn itself; the idlest worker,
blocked longest on the queue, takes it. Evenly loaded workers never pay for
such a kick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.keys import worker_loads

log = logging.getLogger(__name__)

POST_INTERVAL_S = 0.25
# A peer whose last post is older than this has stopped (or its loop is stuck): not a
# target. Compared both ways, so a peer's clock running ahead does not keep it alive.
STALE_S = 2.0

Kick = Callable[[str], Awaitable[bool]]


class LoadBoard:
    """This worker's load, its peers' as last read, and the hand-off decision."""

    def __init__(self, worker_id: str, capacity: int, kick: Kick | None = None) -> None:
        self.worker_id = worker_id
        self.capacity = capacity
        self.carried = 0  # agents in a kick on this worker now
        self._kick = kick  # None: never hands off (a worker alone, tests)
        self._peers: dict[str, int] = {}  # live peers with room: agents each carries

    @contextlib.contextmanager
    def carrying(self) -> Iterator[None]:
        self.carried += 1
        try:
            yield
        finally:
            self.carried -= 1

    async def hand_off(self, agent_id: str) -> bool:
        """Kick the agent through the queue if a peer carries clearly fewer agents.

        Called by a holder that found the agent's next turn after its release: True
        when the kick is sent (the holder stops), False to run the turn here.
        """
        peer = self._lighter_peer()
        if peer is None or self._kick is None:
            return False
        # Count it on the peer until the next read, so one read does not send a peer
        # every agent this worker carries.
        load = self._peers[peer]
        self._peers[peer] = load + 1
        log.info(
            "backlog handed to the queue: this worker carries %d agents, %s %d",
            self.carried,
            peer,
            load,
        )
        return await self._kick(agent_id)

    @property
    def peers(self) -> dict[str, int]:
        """Live peers with room, and the agents each carries, as last read."""
        return dict(self._peers)

    def has_lighter_peer(self) -> bool:
        """Whether ``hand_off`` would kick now."""
        return self._lighter_peer() is not None

    def _lighter_peer(self) -> str | None:
        if self._kick is None or not self._peers:
            return None
        peer, load = min(self._peers.items(), key=lambda item: item[1])
        gap = self.carried - load
        # Loads move by a few agents as kicks come and go: only a gap of a quarter of
        # what this worker carries is worth a kick (a peer running dry, a skewed split).
        if gap < 2 or gap * 4 <= self.carried:
            return None
        return peer

    async def post_forever(self, redis: aioredis.Redis) -> None:
        while True:
            try:
                await self.post(redis)
            except (RedisError, OSError) as exc:
                log.debug("worker loads not exchanged (%s)", exc)
                self._peers = {}  # no view of the peers: run backlogs here
            except Exception:  # a bug here must not end the exchange with a stale view
                log.exception("worker loads not exchanged")
                self._peers = {}
            await asyncio.sleep(POST_INTERVAL_S)

    async def post(self, redis: aioredis.Redis) -> None:
        """Post this worker's load and read its live peers' (one round trip)."""
        now = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(worker_loads(), self.worker_id, f"{self.carried} {self.capacity} {now}")
            pipe.hgetall(worker_loads())
            _, posted = await pipe.execute()
        peers: dict[str, int] = {}
        stopped: list[bytes] = []
        for worker, value in posted.items():
            if worker.decode() == self.worker_id:
                continue
            try:
                carried, capacity, at = (float(part) for part in value.split())
            except ValueError:  # not a load this version posts: not a peer to count on
                continue
            if abs(now - at) > STALE_S:
                stopped.append(worker)
            elif carried < capacity:
                peers[worker.decode()] = int(carried)
        if stopped:
            await redis.hdel(worker_loads(), *stopped)
        self._peers = peers

    async def withdraw(self, redis: aioredis.Redis) -> None:
        """Leave the board (shutdown): peers stop counting on this worker at once."""
        with contextlib.suppress(RedisError, OSError):
            await redis.hdel(worker_loads(), self.worker_id)
