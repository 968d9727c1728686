"""``shared/sql.py`` runs the hot statements past SQLAlchemy's execution path, using its
compiler's internals: each one must answer exactly what SQLAlchemy's own
``session.execute`` answers, rows and row counts, on SQLite and on PostgreSQL.

Every ``Prepared`` statement is in ``shared.sql.ALL``; a new one without a value
for one of its parameters below fails this test until it is covered.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from shared import threads
from shared.leases import acquire_lease
from shared.models import Turn, new_id, utcnow
from shared.resources import Resources
from shared.sql import ALL, Prepared
from shared.status import TurnStatus
from tests.fakellm import FakeLLM
from tests.helpers import add_agent, add_instance, events_of, run, send


async def test_every_prepared_statement_answers_as_sqlalchemy_does(
    res: Resources, llm: FakeLLM
) -> None:
    instance = await add_instance(res, llm)
    agent_id = await add_agent(res, instance)
    session_id = agent_id.rsplit(".", 1)[0]
    await send(res, agent_id, "a finished turn")
    await run(res, agent_id)  # events, a finished turn, and the statements a turn makes
    queued = await send(res, agent_id, "a queued turn")
    lease = await res.db.run(acquire_lease, agent_id, "sql-test", 600)
    assert lease is not None
    event = (await events_of(res, agent_id))[-1]
    for status in TurnStatus:  # the status changes a holder can make
        threads._update_open_turn({"status": status, "running_s": 0.0})
    values = _values(agent_id, session_id, queued, lease.token, lease.seq, instance, event)
    overrides: dict[int, dict[str, Any]] = {
        id(threads._SESSION_EVENTS_AFTER): {"key": session_id},
    }

    checked = await res.db.run(_compare_all, values, overrides)

    assert checked >= 25, checked  # every module's statements were imported and run


def _compare_all(
    session: Session, values: dict[str, Any], overrides: dict[int, dict[str, Any]]
) -> int:
    dialect = session.connection().dialect
    for prepared in ALL:
        names = prepared.bind_names(dialect)
        missing = [n for n in names if n not in values and n not in overrides.get(id(prepared), {})]
        assert not missing, f"no test value for {missing} of {prepared.statement}"
        params = {name: values[name] for name in names} | overrides.get(id(prepared), {})
        ours = _inside_savepoint(session, lambda p=prepared, a=params: _ours(session, p, a))
        theirs = _inside_savepoint(session, lambda p=prepared, a=params: _theirs(session, p, a))
        assert ours == theirs, f"{prepared.statement}\n ours: {ours}\n SQLAlchemy's: {theirs}"
    return len(ALL)


def _inside_savepoint(session: Session, run: Any) -> Any:
    savepoint = session.begin_nested()
    try:
        return run()
    finally:
        savepoint.rollback()


def _ours(session: Session, prepared: Prepared, params: dict[str, Any]) -> Any:
    if _is_insert(prepared):
        prepared.execute_many(session, [params])
        return _written(session, prepared, params)
    result = prepared.execute(session, params)
    if prepared.statement.is_dml and not prepared.statement._returning:  # type: ignore[attr-defined]
        return ("rowcount", result.rowcount)
    return [tuple(row) for row in result.all()]


def _theirs(session: Session, prepared: Prepared, params: dict[str, Any]) -> Any:
    if _is_insert(prepared):
        session.connection().execute(prepared.statement, [params])
        return _written(session, prepared, params)
    result = session.connection().execute(prepared.statement, params)
    if prepared.statement.is_dml and not prepared.statement._returning:  # type: ignore[attr-defined]
        return ("rowcount", result.rowcount)
    return [tuple(row) for row in result.all()]


def _is_insert(prepared: Prepared) -> bool:
    return getattr(prepared.statement, "is_insert", False)


# How to find the row an insert wrote (not by an id the database made: PostgreSQL's
# sequences move on even when the savepoint that used them is rolled back).
_NATURAL_KEYS = {"thread_event": ("thread_id", "seq"), "turn": ("id",)}


def _written(session: Session, prepared: Prepared, params: dict[str, Any]) -> Any:
    """The row an insert wrote, its written columns read back by SQLAlchemy."""
    target = prepared.statement.table  # type: ignore[attr-defined]
    key = _NATURAL_KEYS[target.name]
    columns = [target.c[name] for name in params if name in target.c]
    query = select(*columns).where(*(target.c[k] == params[k] for k in key))
    return [tuple(row) for row in session.connection().execute(query).all()]


def _values(
    agent_id: str,
    session_id: str,
    queued: Turn,
    token: int,
    seq: int,
    instance: str,
    event: Any,
) -> dict[str, Any]:
    now = time.time()
    turn_row = queued.model_dump() | {"id": new_id("turn"), "position": queued.position + 1000}
    turn_row["idempotency_key"] = None
    event_row = {
        "thread_id": agent_id,
        "seq": seq + 1000,
        "session_id": session_id,
        "session_seq": event.session_seq + 1000,
        "type": "agent_message",
        "data": {"content": "inserted"},
        "turn_id": queued.id,
        "created_at": utcnow(),
    }
    return {
        **turn_row,  # _INSERT_TURN (its id, status, input... by column name)
        **{k: v for k, v in event_row.items() if k not in turn_row},  # _INSERT_EVENT
        "seq": event_row["seq"],
        "session_seq": event_row["session_seq"],
        "type": event_row["type"],
        "data": event_row["data"],
        "thread_id": agent_id,
        "agent_id": agent_id,
        "session_id": session_id,
        "turn_id": queued.id,
        "turn_key": queued.id,
        "of_turn": queued.id,
        "instance_id": instance,
        "key": agent_id,
        "token": token,
        "holder": "another",
        "now": now + 3600,  # the lease counts as expired: an acquire returns its row
        "expires_at": now + 60,
        "count": 2,
        "published_seq": seq,
        "after": 0,
        "limit": 100,
        "decided_at": utcnow(),
        "new_status": TurnStatus.RUNNING,
        "new_running_s": 1.5,
        "new_usage": {"input_tokens": 3, "output_tokens": 4},
        "new_output": "an answer",
        "new_finished_at": utcnow(),
        "new_started_at": utcnow(),
        "new_error": {"code": "provider_error", "message": "x", "retryable": True},
        "new_worker_id": "w",
        "new_provider_instance_id": instance,
        "new_model_id": "claude-sonnet-4-6",
        "new_attempt": 1,
        "new_provider_attempts": 2,
        "new_not_before": now + 30,
        "new_waiting": {"reason": "provider_cooldown", "until": now + 30},
    }
