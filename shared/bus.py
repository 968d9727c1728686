"""The event bus on Redis pub/sub: workers publish, each API process fans out.

Publishing is best effort: a durable event is already committed, and a
stream that misses one backfills it from the database by its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.events import Envelope
from shared.keys import session_channel

log = logging.getLogger(__name__)


class RedisSink:
    """Publishes on the session channels, one pipeline at a time, in call order.

    Events queue in the order they are given; one flush at a time sends all
    that queued meanwhile as one pipeline, so the turns of a process share
    round trips under load and every channel sees the process's order.
    ``publish`` returns once its events were sent; ``publish_nowait`` does not
    wait, calls ``on_sent`` once they were (a writer then counts them
    published), and drops events while ``max_backlog`` are still unsent
    (Redis is away).
    """

    def __init__(self, redis: aioredis.Redis, max_backlog: int = 100_000) -> None:
        self._redis = redis
        self._max_backlog = max_backlog
        self._backlog: list[Envelope] = []
        self._on_sent: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def publish(self, events: Sequence[Envelope]) -> None:
        sent = asyncio.get_running_loop().create_future()
        self._waiters.append(sent)
        self._queue(events)
        await asyncio.shield(sent)

    def publish_nowait(
        self, events: Sequence[Envelope], on_sent: Callable[[], None] | None = None
    ) -> None:
        if len(self._backlog) >= self._max_backlog:
            self.dropped += len(events)
            return
        if on_sent is not None:
            self._on_sent.append(on_sent)
        self._queue(events)

    def _queue(self, events: Sequence[Envelope]) -> None:
        self._backlog.extend(events)
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush(), name="event-publisher")

    async def _flush(self) -> None:
        try:
            while self._backlog or self._waiters:
                batch, self._backlog = self._backlog, []
                on_sent, self._on_sent = self._on_sent, []
                waiters, self._waiters = self._waiters, []
                try:
                    if await self._send(batch):
                        for callback in on_sent:
                            callback()
                finally:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._flush_task = None

    async def _send(self, batch: list[Envelope]) -> bool:
        if not batch:
            return True
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for event in batch:
                    pipe.publish(session_channel(event.session_id), event.model_dump_json())
                await pipe.execute()
            return True
        except (RedisError, OSError) as exc:
            log.warning("%d events not published (streams will backfill): %s", len(batch), exc)
            return False

    async def aclose(self) -> None:
        """Send what is queued."""
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)


class Subscription:
    """One stream's view of a session channel: a queue, plus whether it may have missed events."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=10_000)
        self.gap = asyncio.Event()  # set when the hub reconnected or the queue overflowed

    def offer(self, event: Envelope | None) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.gap.set()


class EventHub:
    """One Redis subscriber connection per process, reference-counted per session."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, session_id: str, timeout_s: float = 5.0) -> Subscription:
        """Subscribe; returns once Redis confirmed, so every later publish reaches it."""
        sub = Subscription()
        async with self._lock:
            first = not self._subs[session_id]
            self._subs[session_id].add(sub)
            if first:
                self._confirmed[session_id] = asyncio.Event()
                try:
                    await self._pubsub.subscribe(session_channel(session_id))
                except BaseException:  # Redis away: leave no subscriber waiting for nothing
                    del self._subs[session_id]
                    self._confirmed.pop(session_id, None)
                    raise
            if self._task is None:
                self._task = asyncio.create_task(self._listen(), name="bobbin-event-hub")
            confirmed = self._confirmed[session_id]
        try:
            await asyncio.wait_for(confirmed.wait(), timeout_s)
        except TimeoutError:
            await self.unsubscribe(session_id, sub)
            raise
        return sub

    async def unsubscribe(self, session_id: str, sub: Subscription) -> None:
        async with self._lock:
            subs = self._subs.get(session_id)
            if subs is None:
                return
            subs.discard(sub)
            if not subs:
                del self._subs[session_id]
                self._confirmed.pop(session_id, None)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(session_channel(session_id))

    @property
    def active_streams(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def _listen(self) -> None:
        while True:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                log.warning("event hub lost Redis (%s); resubscribing", exc)
                await self._resubscribe()

    def _dispatch(self, message: dict[str, object]) -> None:
        channel = message["channel"]
        session_id = (channel.decode() if isinstance(channel, bytes) else str(channel)).rsplit(
            ":", 1
        )[-1]
        if message["type"] == "subscribe":
            confirmed = self._confirmed.get(session_id)
            if confirmed is not None:
                confirmed.set()
        elif message["type"] == "message":
            try:
                event = Envelope.model_validate_json(message["data"])  # type: ignore[arg-type]
            except ValueError:  # not ours: never let one bad message stop every stream
                log.warning("dropped a malformed message on %s", channel)
                return
            for sub in list(self._subs.get(event.session_id, ())):
                sub.offer(event)

    async def _resubscribe(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                async with self._lock:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = self._redis.pubsub()
                    channels = [session_channel(s) for s in self._subs]
                    if channels:
                        await self._pubsub.subscribe(*channels)
                    for subs in self._subs.values():
                        for sub in subs:
                            sub.gap.set()
                return
            except (RedisError, OSError, ConnectionError):
                continue

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
