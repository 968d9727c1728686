"""Server-Sent Events for a session or one agent: replay after ``Last-Event-ID``, then live.

The order is what makes the stream lossless: subscribe to the session's
channel (Redis confirmed) before the response headers go out, then replay
from the database, then follow the subscription. A durable event's cursor
(``seq`` on an agent stream, ``session_seq`` on a session stream) is gapless,
so a cursor at or below the last one sent is a duplicate (dropped) and one
that skips ahead is backfilled from the database first; the same backfill
runs whenever the hub says events may have been missed. Ephemeral events get
the id ``<last durable cursor>.<n>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlmodel import Session
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.schemas import MAX_INT_CURSOR
from api.state import ApiState
from shared.bus import Subscription
from shared.errors import InvalidCursor, ServiceUnavailable
from shared.events import Envelope, StoredEvent
from shared.sessions import get_chat_session
from shared.threads import events_after, get_thread, session_events_after

PAGE_SIZE = 500
GAP_CHECK_S = 1.0
REAUTH_S = 5.0  # how often a stream asks again whether its API key is still active
KEEPALIVE_FRAME = ": keep-alive\n\n"
Authorized = Callable[[], Awaitable[bool]]
_LAST_EVENT_ID = re.compile(r"^(\d{1,19})(?:\.\d{1,19})?$")


def parse_last_event_id(value: str | None) -> int | None:
    """The durable cursor D of ``D`` or ``D.n``; raises InvalidCursor."""
    if value is None:
        return None
    match = _LAST_EVENT_ID.match(value.strip())
    if match is None or int(match.group(1)) > MAX_INT_CURSOR:
        raise InvalidCursor(
            f"Last-Event-ID {value[:50]!r} is not a cursor of this stream: "
            "send the last id received"
        )
    return int(match.group(1))


@dataclass(frozen=True)
class StreamTarget:
    """What a stream carries: a whole session, or one agent of it."""

    session_id: str
    agent_id: str | None = None

    def cursor(self, event: Envelope) -> int:
        cursor = event.seq if self.agent_id else event.session_seq
        assert cursor is not None
        return cursor

    def carries(self, event: Envelope) -> bool:
        return self.agent_id is None or event.agent_id == self.agent_id

    def read_after(self, session: Session, after: int, limit: int) -> list[StoredEvent]:
        if self.agent_id:
            return events_after(session, self.agent_id, after, limit)
        return session_events_after(session, self.session_id, after, limit)

    def head(self, session: Session) -> int:
        """The cursor of the last durable event committed so far."""
        if self.agent_id:
            return get_thread(session, self.agent_id).seq
        return get_chat_session(session, self.session_id).session_seq


def sse_frame(event: Envelope, event_id: str) -> str:
    exclude = None if event.durable else {"seq", "session_seq"}
    return (
        f"event: {event.type}\nid: {event_id}\ndata: {event.model_dump_json(exclude=exclude)}\n\n"
    )


class EventStream:
    """The frames of one subscribed stream, starting after cursor ``last``."""

    def __init__(
        self,
        state: ApiState,
        sub: Subscription,
        target: StreamTarget,
        last: int,
        *,
        replay: bool,
        authorized: Authorized | None = None,
    ) -> None:
        self._db = state.resources.db
        self._authorized = authorized
        self._keepalive_s = state.keepalive_s
        self._sub = sub
        self._target = target
        self._last = last
        self._replay = replay
        self._ephemeral_n = 0

    async def frames(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        yield ": connected\n\n"
        if self._replay:
            async for frame in self._backfill():
                yield frame
        last_write = loop.time()
        next_auth = loop.time() + REAUTH_S
        while True:
            if self._authorized is not None and loop.time() >= next_auth:
                if not await self._authorized():
                    return  # its key was revoked: the stream ends
                next_auth = loop.time() + REAUTH_S
            if self._sub.gap.is_set():
                self._sub.gap.clear()
                async for frame in self._backfill():
                    yield frame
                    last_write = loop.time()
            wait_s = min(GAP_CHECK_S, max(0.0, last_write + self._keepalive_s - loop.time()))
            try:
                event = await asyncio.wait_for(self._sub.queue.get(), wait_s)
            except TimeoutError:
                if loop.time() - last_write >= self._keepalive_s:
                    yield KEEPALIVE_FRAME
                    last_write = loop.time()
                continue
            if event is None:
                return
            async for frame in self._live(event):
                yield frame
                last_write = loop.time()

    async def _live(self, event: Envelope) -> AsyncIterator[str]:
        if not self._target.carries(event):
            return
        if not event.durable:
            self._ephemeral_n += 1
            yield sse_frame(event, f"{self._last}.{self._ephemeral_n}")
            return
        cursor = self._target.cursor(event)
        if cursor > self._last + 1:  # some were missed: the database has them
            async for frame in self._backfill(until=cursor):
                yield frame
        if cursor > self._last:
            yield self._durable(event)

    async def _backfill(self, until: int | None = None) -> AsyncIterator[str]:
        """Durable events after the last cursor sent (up to ``until``), in short reads."""
        while until is None or self._last < until:
            rows = await self._db.read(self._target.read_after, self._last, PAGE_SIZE)
            for row in rows:
                event = row.envelope()
                if until is not None and self._target.cursor(event) > until:
                    return
                yield self._durable(event)
            if len(rows) < PAGE_SIZE:
                return

    def _durable(self, event: Envelope) -> str:
        self._last, self._ephemeral_n = self._target.cursor(event), 0
        return sse_frame(event, str(self._last))


class SubscribedStream(StreamingResponse):
    """An SSE response that releases its subscription however it ends, even unstarted."""

    def __init__(self, frames: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self._on_close())


async def open_stream(
    state: ApiState,
    target: StreamTarget,
    after: int | None,
    authorized: Authorized | None = None,
) -> SubscribedStream:
    """Subscribe (Redis confirmed), then fix the starting cursor; raises ServiceUnavailable.

    ``authorized`` is asked every ``REAUTH_S`` while the stream runs; it ends when False.
    """
    hub = state.hub
    try:
        sub = await hub.subscribe(target.session_id)
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable("event streams need Redis, which is unavailable") from exc

    async def close() -> None:
        with contextlib.suppress(RedisError, OSError):
            await hub.unsubscribe(target.session_id, sub)

    try:
        head = await state.resources.db.read(target.head)
        if after is not None and after > head:  # never sent: resuming there would skip events
            raise InvalidCursor(
                f"Last-Event-ID {after} is past the last event of this stream ({head}): "
                "send the last id received"
            )
        last = head if after is None else after
    except BaseException:
        await close()
        raise
    stream = EventStream(state, sub, target, last, replay=after is not None, authorized=authorized)
    return SubscribedStream(stream.frames(), close)
