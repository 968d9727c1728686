"""An agent's durable events by page, and live streams (SSE) of a session or an agent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sqlmodel import Session

from api.auth import BearerDep, key_still_active
from api.deps import DbDep, StateDep, parse_int_cursor
from api.schemas import MAX_EVENTS_LIMIT, MAX_INT_CURSOR, MAX_NAME_CHARS, EventList, EventOut
from api.streaming import StreamTarget, SubscribedStream, open_stream, parse_last_event_id
from shared.events import StoredEvent
from shared.sessions import get_chat_session
from shared.threads import events_after, get_thread

router = APIRouter(tags=["events"])
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream"}
}


def _events(session: Session, agent_id: str, after: int, limit: int) -> list[StoredEvent]:
    get_thread(session, agent_id)
    return events_after(session, agent_id, after, limit)


@router.get("/agents/{agent_id}/events")
async def list_events(
    agent_id: str,
    db: DbDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=MAX_NAME_CHARS)] = None,
) -> EventList:
    """Durable events with ``seq > after`` in order; ``next_cursor`` is the last ``seq``
    returned while more follow, null at the end (``cursor`` is accepted for ``after``)."""
    if cursor is not None:
        after = parse_int_cursor(cursor)
    rows = await db.read(_events, agent_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return EventList(
        events=[EventOut.of(row) for row in rows], next_cursor=rows[-1].seq if more else None
    )


@router.get(
    "/sessions/{session_id}/events/stream",
    status_code=200,
    response_class=SubscribedStream,
    responses=SSE_RESPONSES,
)
async def stream_session(
    session_id: str, state: StateDep, credentials: BearerDep, last_event_id: LastEventId = None
) -> SubscribedStream:
    """Every event of the session's agents; ids are ``session_seq`` (``<D>.<n>`` ephemeral).

    Without ``Last-Event-ID`` the stream follows live; with it, it resumes after D.
    """
    after = parse_last_event_id(last_event_id)
    await state.resources.db.read(get_chat_session, session_id)
    authorized = key_still_active(state, credentials)
    return await open_stream(state, StreamTarget(session_id), after, authorized)


@router.get(
    "/agents/{agent_id}/events/stream",
    status_code=200,
    response_class=SubscribedStream,
    responses=SSE_RESPONSES,
)
async def stream_agent(
    agent_id: str, state: StateDep, credentials: BearerDep, last_event_id: LastEventId = None
) -> SubscribedStream:
    """One agent's events; ids are its ``seq`` (``<D>.<n>`` for ephemeral events)."""
    after = parse_last_event_id(last_event_id)
    thread = await state.resources.db.read(get_thread, agent_id)
    target = StreamTarget(thread.session_id, agent_id)
    return await open_stream(state, target, after, key_still_active(state, credentials))
