"""Sessions: created with their coordinator agent ``<session_id>.1``."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.deps import AgentsDep, DbDep, PageDep
from api.schemas import SessionCreate, SessionList, SessionOut, SessionUpdate, config_patch
from shared.approvals import session_grants
from shared.budgets import spent_usd
from shared.models import ChatSession
from shared.sessions import get_chat_session, list_chat_sessions, update_chat_session

router = APIRouter(tags=["sessions"])


def _out(session: Session, chat: ChatSession) -> SessionOut:
    spent = spent_usd(session, chat.id, chat.budget)
    return SessionOut.of(chat, session_grants(session, chat.id), spent)


def _read(session: Session, session_id: str) -> SessionOut:
    return _out(session, get_chat_session(session, session_id))


@router.post("/projects/{project_id}/sessions", status_code=201, summary="Create a session")
async def create(project_id: str, body: SessionCreate, agents: AgentsDep) -> SessionOut:
    """Create a session and spawn its coordinator agent ``<session_id>.1`` with it.

    422 ``provider_not_configured`` without an effective instance and model;
    404 ``project_not_found`` for an unknown project.
    """
    configuration = body.configuration.model_dump(exclude_none=True) if body.configuration else {}
    budget = body.budget.model_dump() if body.budget else None
    chat, _ = await agents.create_session(project_id, body.name, configuration, budget)
    return SessionOut.of(chat, set(), "0" if budget else None)


@router.get("/projects/{project_id}/sessions", summary="List a project's sessions")
async def list_all(project_id: str, db: DbDep, page: PageDep) -> SessionList:
    """The project's sessions, ordered by id.

    404 ``project_not_found`` for an unknown project.
    """

    def read(session: Session) -> list[SessionOut]:
        return [
            _out(session, chat)
            for chat in list_chat_sessions(session, project_id, page.cursor, page.fetch)
        ]

    rows, next_cursor = page.cut(await db.read(read), lambda row: row.id)
    return SessionList(sessions=rows, next_cursor=next_cursor)


@router.get("/sessions/{session_id}", summary="Get a session")
async def get(session_id: str, db: DbDep) -> SessionOut:
    """A session, with ``approved_tools``: the tools granted ``allow_session``.

    404 ``session_not_found`` for an unknown id.
    """
    return await db.read(_read, session_id)


@router.patch("/sessions/{session_id}", summary="Update a session")
async def update(session_id: str, body: SessionUpdate, db: DbDep) -> SessionOut:
    """Set fields; omitted ones stay. In ``configuration`` a null field removes it (null as a
    whole removes all); a null ``budget`` removes the budget.

    404 ``session_not_found`` for an unknown id.
    """
    patch = config_patch(body.configuration, "configuration" in body.model_fields_set)
    changes = body.changes("name") | body.budget_change()

    def write(session: Session) -> SessionOut:
        return _out(session, update_chat_session(session, session_id, changes, patch))

    return await db.run(write)
