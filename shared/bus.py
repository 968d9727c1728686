"""The event bus on Redis pub/sub: workers publish, each API process fans out.

Publishing is best effort: a durable event is already committed, and a
stream that misses one backfills it from the database by its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.events import TURN_CLOSING_TYPES, Envelope
from shared.keys import session_channel

log = logging.getLogger(__name__)
ENDED_TURNS_KEPT = 100_000  # per API process: ~10 MB of turn ids


Guard = Callable[[], bool]


class RedisSink:
    """Publishes on the session channels, one pipeline at a time, in call order.

    Events queue in the order they are given; one flush at a time sends all
    that queued meanwhile as one pipeline, so the turns of a process share
    round trips under load and every channel sees the process's order.
    ``publish`` returns once its events were sent; ``publish_nowait`` does not
    wait, calls ``on_sent`` once they were (a writer then counts them
    published), drops events whose ``still_current`` says False by the time
    they go out (a stale holder's tokens), and drops events while
    ``max_backlog`` are still unsent (Redis is away).
    """

    def __init__(self, redis: aioredis.Redis, max_backlog: int = 100_000) -> None:
        self._redis = redis
        self._max_backlog = max_backlog
        self._backlog: list[tuple[Envelope, Guard | None]] = []
        self._on_sent: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def publish(self, events: Sequence[Envelope]) -> None:
        sent = asyncio.get_running_loop().create_future()
        self._waiters.append(sent)
        self._queue(events, None)
        await asyncio.shield(sent)

    def publish_nowait(
        self,
        events: Sequence[Envelope],
        on_sent: Callable[[], None] | None = None,
        still_current: Guard | None = None,
    ) -> None:
        if len(self._backlog) >= self._max_backlog:
            self.dropped += len(events)
            return
        if on_sent is not None:
            self._on_sent.append(on_sent)
        self._queue(events, still_current)

    def _queue(self, events: Sequence[Envelope], still_current: Guard | None) -> None:
        self._backlog.extend((event, still_current) for event in events)
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush(), name="event-publisher")

    async def _flush(self) -> None:
        try:
            while self._backlog or self._waiters:
                queued, self._backlog = self._backlog, []
                on_sent, self._on_sent = self._on_sent, []
                waiters, self._waiters = self._waiters, []
                batch = [event for event, current in queued if current is None or current()]
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
    """One Redis subscriber connection per process, reference-counted per session.

    While that connection is lost (until it is back and every channel is
    subscribed again) the hub refuses new subscriptions with a ConnectionError
    (the API answers 503) instead of handing out a stream that stays silent.
    It drops the ephemeral events of turns it has seen end: they can only come
    from an attempt that is no longer the turn's (a holder paused past its lease).
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.connected = True
        self._ended_turns: OrderedDict[str, None] = OrderedDict()

    async def subscribe(self, session_id: str, timeout_s: float = 5.0) -> Subscription:
        """Subscribe; returns once Redis confirmed, so every later publish reaches it.

        Raises a Redis ConnectionError while the hub's connection is lost, and
        TimeoutError when Redis does not confirm within ``timeout_s``.
        """
        if not self.connected:
            raise RedisConnectionError("the event bus lost Redis; it is reconnecting")
        sub = Subscription()
        async with self._lock:
            first = not self._subs[session_id]
            self._subs[session_id].add(sub)
            if first:
                self._confirmed[session_id] = asyncio.Event()
                try:
                    async with asyncio.timeout(timeout_s):  # not redis-py's retries, seconds each
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
                self.connected = False
                await self._resubscribe()
                self.connected = True

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
            if self._is_stale(event):
                return
            for sub in list(self._subs.get(event.session_id, ())):
                sub.offer(event)

    def _is_stale(self, event: Envelope) -> bool:
        """True for an ephemeral event of a turn that has ended; notes turns that end."""
        if event.turn_id is None:
            return False
        if not event.durable:
            return event.turn_id in self._ended_turns
        if event.type in TURN_CLOSING_TYPES:
            self._ended_turns[event.turn_id] = None
            if len(self._ended_turns) > ENDED_TURNS_KEPT:
                self._ended_turns.popitem(last=False)
        return False

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
