"""Table models. API shapes are separate classes (``api/schemas.py``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _json(**kw: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False), **kw)


def _json_nullable() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class Meta(SQLModel, table=True):
    """Process-wide facts kept in the database, such as the secret key's fingerprint."""

    __tablename__ = "bobbin_meta"
    key: str = Field(primary_key=True)
    value: str


class Project(SQLModel, table=True):
    __tablename__ = "project"
    id: str = Field(primary_key=True)
    name: str
    working_directory: str | None = None
    configuration: dict[str, Any] = _json()
    budget: dict[str, Any] | None = _json_nullable()  # {"max_cost_usd", "window"}
    created_at: datetime = Field(default_factory=utcnow)


class ChatSession(SQLModel, table=True):
    __tablename__ = "session"
    id: str = Field(primary_key=True)
    project_id: str = Field(foreign_key="project.id", index=True)
    name: str
    configuration: dict[str, Any] = _json()
    budget: dict[str, Any] | None = _json_nullable()
    agent_counter: int = 0
    session_seq: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Thread(SQLModel, table=True):
    """An agent's thread: its metadata, counters and lease. Agent ids are thread ids."""

    __tablename__ = "thread"
    id: str = Field(primary_key=True)
    session_id: str = Field(foreign_key="session.id", index=True)
    ordinal: int = 0  # n in <session_id>.<n>: the agents' listing order
    meta: dict[str, Any] = _json()
    seq: int = 0
    published_seq: int = 0
    position: int = 0
    lease_token: int = 0
    lease_holder: str | None = None
    lease_expires_at: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class ThreadEvent(SQLModel, table=True):
    __tablename__ = "thread_event"
    __table_args__ = (
        UniqueConstraint("thread_id", "seq"),
        UniqueConstraint("session_id", "session_seq"),
    )
    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="thread.id")
    seq: int
    session_id: str
    session_seq: int
    type: str
    data: dict[str, Any] = _json()
    turn_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Turn(SQLModel, table=True):
    __tablename__ = "turn"
    __table_args__ = (
        Index("ix_turn_agent_open", "agent_id", "status", "position"),
        UniqueConstraint("agent_id", "idempotency_key"),
    )
    id: str = Field(primary_key=True)
    agent_id: str = Field(foreign_key="thread.id")
    session_id: str = Field(index=True)
    status: str = Field(default="queued", index=True)
    input: str
    output: str | None = None
    position: int
    provider_instance_id: str | None = None
    model_id: str | None = None
    attempt: int = 0
    worker_id: str | None = None
    error: dict[str, Any] | None = _json_nullable()
    usage: dict[str, Any] | None = _json_nullable()
    cancel_requested: bool = False
    # Parked until then (epoch seconds), and why: a cooldown, a limit, a budget (flow control).
    not_before: float | None = None
    waiting: dict[str, Any] | None = _json_nullable()
    provider_attempts: int = 0  # throttled answers (429, 529, 503) spent, across waits
    running_s: float = 0.0
    idempotency_key: str | None = None
    request_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


# The decision recorded on a request whose turn ended before anyone decided it.
CLOSED_DECISION = "closed"


class Approval(SQLModel, table=True):
    """A tool call waiting for (or given) a decision; one per ``(agent_id, tool_call_id)``.

    ``decision``: ``allow_once``, ``allow_session`` or ``deny``; ``CLOSED_DECISION``
    when its turn ended first (cancelled, failed).
    """

    __tablename__ = "approval"
    agent_id: str = Field(primary_key=True)
    tool_call_id: str = Field(primary_key=True)
    turn_id: str = Field(index=True)
    session_id: str = Field(index=True)
    tool: str
    arguments: dict[str, Any] = _json()
    decision: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class SessionGrant(SQLModel, table=True):
    """A tool allowed for every agent of a session (``allow_session``)."""

    __tablename__ = "session_grant"
    session_id: str = Field(primary_key=True)
    tool: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)


class ProviderInstance(SQLModel, table=True):
    __tablename__ = "provider_instance"
    id: str = Field(primary_key=True)
    name: str
    catalog_provider_id: str
    base_url: str | None = None
    timeout_s: float = 60.0
    # Models the catalog does not know, or its values overridden: [{"id", "context_window"...}]
    models: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    limits: dict[str, Any] = _json()  # requests and tokens per minute, concurrency
    created_at: datetime = Field(default_factory=utcnow)


class Credential(SQLModel, table=True):
    """An instance's API key, encrypted with the secret key (Fernet)."""

    __tablename__ = "credential"
    instance_id: str = Field(primary_key=True, foreign_key="provider_instance.id")
    ciphertext: str
    updated_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    id: str = Field(primary_key=True)
    name: str
    key_hash: str = Field(unique=True)
    prefix: str
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class BudgetSpend(SQLModel, table=True):
    """What a budget's scope (a project or a session) spent in one period, and holds now.

    Amounts are in nano-dollars: integers add up exactly on every database.
    ``period`` is ``total``, a UTC day (``2026-12-04``) or month (``2026-12``).
    """

    __tablename__ = "budget_spend"
    scope_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    spent_nanos: int = Field(default=0, sa_type=BigInteger)
    reserved_nanos: int = Field(default=0, sa_type=BigInteger)


class BudgetHold(SQLModel, table=True):
    """One model call's reservation against one budget, until its usage settles it."""

    __tablename__ = "budget_hold"
    id: str = Field(primary_key=True)
    scope_id: str = Field(primary_key=True)
    period: str
    nanos: int = Field(sa_type=BigInteger)
    turn_id: str = Field(index=True)
    expires_at: float  # a hold its worker never settled is released after it


def table(model: type[SQLModel]) -> Table:
    """A model's table, for statements built once with Core (cheaper per call than the ORM)."""
    return model.__table__  # type: ignore[attr-defined]
