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
_SSE_EXAMPLE = (  # one ephemeral event, then the durable one that holds the whole text
    'event: agent_token\nid: {token_id}\ndata: {{"type":"agent_token",'
    '"session_id":"ses_8a41c7e2b95d03f6","agent_id":"ses_8a41c7e2b95d03f6.1",'
    '"turn_id":"turn_5b0e9d2c71a4f836","data":{{"text":"The test depends on "}}}}\n\n'
    'event: agent_message\nid: {message_id}\ndata: {{"type":"agent_message",'
    '"session_id":"ses_8a41c7e2b95d03f6","agent_id":"ses_8a41c7e2b95d03f6.1",'
    '"turn_id":"turn_5b0e9d2c71a4f836","seq":17,"session_seq":23,'
    '"data":{{"content":"The test depends on the local timezone."}}}}\n\n'
)


def _sse_responses(token_id: str, message_id: str) -> dict[int | str, dict[str, Any]]:
    example = _SSE_EXAMPLE.format(token_id=token_id, message_id=message_id)
    content = {"text/event-stream": {"schema": {"type": "string"}, "example": example}}
    return {200: {"content": content, "description": "An SSE stream"}}


def _events(session: Session, agent_id: str, after: int, limit: int) -> list[StoredEvent]:
    get_thread(session, agent_id)
    return events_after(session, agent_id, after, limit)


@router.get("/agents/{agent_id}/events", summary="List an agent's events")
async def list_events(
    agent_id: str,
    db: DbDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=MAX_NAME_CHARS)] = None,
) -> EventList:
    """Durable events with ``seq > after`` in order; ``next_cursor`` is the last ``seq``
    returned while more follow, null at the end (``cursor`` is accepted for ``after``).

    ``limit`` is 1 to 10000 (default 100). 404 ``agent_not_found`` for an unknown agent.
    """
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
    responses=_sse_responses("22.1", "23"),
    summary="Stream a session's events",
)
async def stream_session(
    session_id: str, state: StateDep, credentials: BearerDep, last_event_id: LastEventId = None
) -> SubscribedStream:
    """Server-Sent Events of every agent of the session; ids are ``session_seq``
    (``<D>.<n>`` for ephemeral events).

    Without ``Last-Event-ID`` the stream follows live; with it, it resumes after D with no
    durable event lost or repeated. 400 ``invalid_cursor`` for a malformed
    ``Last-Event-ID``, 404 ``session_not_found`` for an unknown session.
    """
    after = parse_last_event_id(last_event_id)
    await state.resources.db.read(get_chat_session, session_id)
    authorized = key_still_active(state, credentials)
    return await open_stream(state, StreamTarget(session_id), after, authorized)


@router.get(
    "/agents/{agent_id}/events/stream",
    status_code=200,
    response_class=SubscribedStream,
    responses=_sse_responses("16.1", "17"),
    summary="Stream an agent's events",
)
async def stream_agent(
    agent_id: str, state: StateDep, credentials: BearerDep, last_event_id: LastEventId = None
) -> SubscribedStream:
    """Server-Sent Events of one agent; ids are its ``seq`` (``<D>.<n>`` for ephemeral events).

    Resumes after D with ``Last-Event-ID`` as the session stream does. 400
    ``invalid_cursor`` for a malformed ``Last-Event-ID``, 404 ``agent_not_found``.
    """
    after = parse_last_event_id(last_event_id)
    thread = await state.resources.db.read(get_thread, agent_id)
    target = StreamTarget(thread.session_id, agent_id)
    return await open_stream(state, target, after, key_still_active(state, credentials))
