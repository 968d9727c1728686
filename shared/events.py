"""Event types (a public contract: never rename one) and the envelope clients see.

Durable events are persisted on the thread and replayable; ephemeral events
travel through Redis only. Every type's ``data`` has its own model here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentData(_Data):
    content: str


class AgentMessageData(ContentData):
    partial: bool = False


class ToolCallData(_Data):
    tool_call_id: str
    provider_call_id: str
    tool: str
    arguments: dict[str, Any]
    round: int


class ToolApprovalRequestData(_Data):
    tool_call_id: str
    tool: str
    arguments: dict[str, Any]


class ToolApprovalResponseData(_Data):
    tool_call_id: str
    decision: Literal["allow_once", "allow_session", "deny"]


class ToolResultData(_Data):
    tool_call_id: str
    status: Literal["completed", "failed", "denied", "aborted"]
    content: str


class CompactionData(_Data):
    summary: str = ""


class TurnStartedData(_Data):
    provider_instance_id: str | None = None
    model_id: str | None = None


class TurnCompletedData(_Data):
    usage: dict[str, Any] | None = None


class TurnFailedData(_Data):
    code: str
    message: str
    retryable: bool = False


class TurnCancelledData(_Data):
    reason: str = "cancelled"


class TextData(_Data):
    text: str


class StateData(_Data):
    state: Literal[
        "idle", "thinking", "streaming", "tool_execution", "awaiting_approval", "waiting"
    ]
    reason: str | None = None  # waiting: provider_cooldown, rate_limit, budget_reserved...


class UsageData(_Data):
    input_tokens: int = 0
    output_tokens: int = 0


DURABLE_TYPES: dict[str, type[_Data]] = {
    "user_message": ContentData,
    "agent_message": AgentMessageData,
    "tool_call": ToolCallData,
    "tool_approval_request": ToolApprovalRequestData,
    "tool_approval_response": ToolApprovalResponseData,
    "tool_result": ToolResultData,
    "system_prompt": ContentData,
    "local_system_message": ContentData,
    "compaction": CompactionData,
    "turn_started": TurnStartedData,
    "turn_completed": TurnCompletedData,
    "turn_failed": TurnFailedData,
    "turn_cancelled": TurnCancelledData,
}
EPHEMERAL_TYPES: dict[str, type[_Data]] = {
    "agent_token": TextData,
    "agent_thinking": TextData,
    "agent_state": StateData,
    "usage": UsageData,
}
TURN_CLOSING_TYPES = frozenset({"turn_completed", "turn_failed", "turn_cancelled"})


class NewEvent(BaseModel):
    """A durable event about to be appended: its type and validated data."""

    type: str
    data: dict[str, Any]

    @classmethod
    def of(cls, type_: str, **data: Any) -> NewEvent:
        model = DURABLE_TYPES[type_]
        return cls(type=type_, data=model(**data).model_dump(exclude_none=True))


class Envelope(BaseModel):
    """What a client receives for every event (API.md, Events)."""

    type: str
    session_id: str
    agent_id: str
    turn_id: str | None = None
    seq: int | None = None
    session_seq: int | None = None
    data: dict[str, Any]

    @property
    def durable(self) -> bool:
        return self.seq is not None

    @classmethod
    def ephemeral(
        cls, type_: str, *, session_id: str, agent_id: str, turn_id: str | None, **data: Any
    ) -> Envelope:
        model = EPHEMERAL_TYPES[type_]
        return cls(
            type=type_,
            session_id=session_id,
            agent_id=agent_id,
            turn_id=turn_id,
            data=model(**data).model_dump(exclude_none=True),
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event of a thread, as appends return it and reads give it back.

    A plain record, not an ORM entity: a worker holds whole threads of these,
    and building entities per event dominated rebuilding an agent.
    """

    thread_id: str
    seq: int
    session_id: str
    session_seq: int
    type: str
    data: dict[str, Any]
    turn_id: str | None
    created_at: datetime

    def envelope(self) -> Envelope:
        return Envelope(
            type=self.type,
            session_id=self.session_id,
            agent_id=self.thread_id,
            turn_id=self.turn_id,
            seq=self.seq,
            session_seq=self.session_seq,
            data=self.data,
        )
