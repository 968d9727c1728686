"""The API's request and response shapes (API.md), separate from the table models.

Request bodies refuse unknown fields, so a misspelt field is a 422 rather than
silently ignored. Timestamps are serialized as ISO-8601 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from shared.agents.records import AgentView
from shared.configuration import Configuration
from shared.events import StoredEvent
from shared.models import Approval, ChatSession, Project, Turn
from shared.pricing import shown_usage
from shared.providers.catalog import CatalogProvider
from shared.providers.instances import InstanceView
from shared.status import FINISHED, TurnStatus

MAX_NAME_CHARS = 200
MAX_MESSAGE_CHARS = 1_000_000
MAX_LIST_LIMIT = 1000
MAX_EVENTS_LIMIT = 10_000
MAX_WAIT_S = 30.0
MAX_INT_CURSOR = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def iso_utc(moment: datetime | float) -> str:
    """A stored moment (a datetime, or epoch seconds) as ISO-8601 UTC."""
    if isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, UTC)
    if moment.tzinfo is None:  # stored in UTC; SQLite hands it back naive
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


NoNul = AfterValidator(_no_nul)
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS), NoNul]
InstanceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9][\w.-]*$"),
]
BaseUrl = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$"), NoNul]
DirectoryPath = Annotated[str, StringConstraints(min_length=1, max_length=4096), NoNul]
UtcDatetime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatchBody(Body):
    """A PATCH: omitted fields stay as they are; these fields may not be set to null."""

    NOT_NULL: ClassVar[tuple[str, ...]] = ("name",)

    @field_validator("*")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("may not be null")
        return value

    def changes(self, *fields: str) -> dict[str, Any]:
        """The given fields the client set, with their new values."""
        return {f: getattr(self, f) for f in fields if f in self.model_fields_set}

    def budget_change(self) -> dict[str, Any]:
        """``budget`` as stored, when the client set it (null removes it)."""
        if "budget" not in self.model_fields_set:
            return {}
        budget = getattr(self, "budget", None)
        return {"budget": budget.model_dump() if budget else None}


def config_patch(configuration: Configuration | None, was_set: bool) -> dict[str, Any]:
    """A configuration PATCH: set fields replace, null fields drop; null as a whole drops all."""
    if not was_set:
        return {}
    if configuration is None:
        return dict.fromkeys(Configuration.model_fields)
    return configuration.model_dump(exclude_unset=True)


class ListPage(BaseModel):
    next_cursor: str | None = None


# -- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


# -- health ---------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: str


class ReadinessOut(BaseModel):
    status: str
    checks: dict[str, str]


# -- providers ------------------------------------------------------------------------


class CatalogOut(ListPage):
    providers: list[CatalogProvider]


class CredentialIn(Body):
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=10_000), NoNul]


class ModelDeclaration(Body):
    """A model an instance serves: what the catalog does not know, or overrides."""

    id: Name
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    supports_tools: bool | None = None
    cost_per_mtok_in: float | None = Field(default=None, ge=0)
    cost_per_mtok_out: float | None = Field(default=None, ge=0)


class LimitValues(Body):
    requests_per_minute: int | None = Field(default=None, ge=1)
    input_tokens_per_minute: int | None = Field(default=None, ge=1)
    output_tokens_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent_requests: int | None = Field(default=None, ge=1)


class Limits(LimitValues):
    """Limits for the instance as a whole, and per model; they hold across the cluster."""

    per_model: dict[Name, LimitValues] | None = None


class InstanceCreate(Body):
    id: InstanceId | None = None
    name: Name
    catalog_provider_id: Name
    base_url: BaseUrl | None = None
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    credential: CredentialIn | None = None
    models: list[ModelDeclaration] = Field(default_factory=list, max_length=1000)
    limits: Limits | None = None

    def declared(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``models`` and ``limits`` as the instance stores them."""
        models = [m.model_dump(exclude_none=True) for m in self.models]
        return models, self.limits.model_dump(exclude_none=True) if self.limits else {}


class InstanceUpdate(PatchBody):
    NOT_NULL = ("name", "catalog_provider_id", "timeout_s", "credential")

    name: Name | None = None
    catalog_provider_id: Name | None = None
    base_url: BaseUrl | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    credential: CredentialIn | None = None
    models: list[ModelDeclaration] | None = Field(default=None, max_length=1000)
    limits: Limits | None = None

    def declared(self) -> dict[str, Any]:
        """The set ones of ``models`` and ``limits`` as the instance stores them (null: none)."""
        changes: dict[str, Any] = {}
        if "models" in self.model_fields_set:
            changes["models"] = [m.model_dump(exclude_none=True) for m in self.models or []]
        if "limits" in self.model_fields_set:
            changes["limits"] = self.limits.model_dump(exclude_none=True) if self.limits else {}
        return changes


class InstanceList(ListPage):
    provider_instances: list[InstanceView]


class InstanceTestIn(Body):
    model_id: Name | None = None


class InstanceTestOut(BaseModel):
    ok: bool
    models: list[str] | None = None
    error: dict[str, Any] | None = None


# -- projects and sessions ------------------------------------------------------------


class BudgetIn(Body):
    """At most ``max_cost_usd`` (a decimal string) of model calls per UTC ``window``."""

    max_cost_usd: Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,9})?$")]
    window: Literal["total", "day", "month"] = "total"


class ProjectCreate(Body):
    name: Name
    working_directory: DirectoryPath | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class ProjectUpdate(PatchBody):
    name: Name | None = None
    working_directory: DirectoryPath | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class ProjectOut(BaseModel):
    id: str
    name: str
    working_directory: str | None
    configuration: dict[str, Any]
    budget: dict[str, Any] | None = None
    spent_usd: str | None = None  # in the budget's current window
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Project, spent_usd: str | None = None) -> ProjectOut:
        out = cls.model_validate(row, from_attributes=True)
        out.spent_usd = spent_usd
        return out


class ProjectList(ListPage):
    projects: list[ProjectOut]


class SessionCreate(Body):
    name: Name
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class SessionUpdate(PatchBody):
    name: Name | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class SessionOut(BaseModel):
    id: str
    project_id: str
    name: str
    configuration: dict[str, Any]
    budget: dict[str, Any] | None = None
    spent_usd: str | None = None  # in the budget's current window
    coordinator_agent_id: str
    approved_tools: list[str]
    created_at: UtcDatetime

    @classmethod
    def of(
        cls, row: ChatSession, approved_tools: set[str], spent_usd: str | None = None
    ) -> SessionOut:
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            configuration=row.configuration,
            budget=row.budget,
            spent_usd=spent_usd,
            coordinator_agent_id=f"{row.id}.1",
            approved_tools=sorted(approved_tools),
            created_at=row.created_at,
        )


class SessionList(ListPage):
    sessions: list[SessionOut]


# -- agents ---------------------------------------------------------------------------


class AgentCreate(Configuration):
    """An agent's name and the configuration it sets itself (the rest is inherited)."""

    name: Name


class AgentUpdate(Configuration):
    """Switch provider or model from the next turn on; null drops the agent's own value."""

    name: Name | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("may not be null")
        return value


class AgentList(ListPage):
    agents: list[AgentView]


# -- messages and turns ---------------------------------------------------------------


class MessageIn(Body):
    content: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS), NoNul]


class TurnErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool = False


class UsageOut(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: str | None = None  # null when no price is known
    estimated: bool = False  # the server sent no usage: Bobbin counted the tokens

    @classmethod
    def of(cls, stored: dict[str, Any]) -> UsageOut:
        return cls(**shown_usage(stored))


class WaitingOut(BaseModel):
    reason: str
    until: UtcDatetime | None


class TurnOut(BaseModel):
    id: str
    agent_id: str
    session_id: str
    status: str
    input: str
    output: str | None
    attempt: int
    position: int
    provider_instance_id: str | None
    model_id: str | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    error: TurnErrorOut | None = None
    usage: UsageOut | None = None
    waiting: WaitingOut | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``error``, ``usage`` and ``waiting`` are left out rather than null."""
        data: dict[str, Any] = handler(self)
        for key in ("error", "usage", "waiting"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @classmethod
    def of(cls, turn: Turn) -> TurnOut:
        shows_error = turn.status in FINISHED and bool(turn.error)
        waits = turn.status == TurnStatus.QUEUED and turn.waiting is not None
        return cls(
            **turn.model_dump(exclude={"error", "usage", "waiting"}),
            error=TurnErrorOut.model_validate(turn.error) if shows_error else None,
            usage=UsageOut.of(turn.usage) if turn.usage else None,
            waiting=WaitingOut.model_validate(turn.waiting) if waits else None,
        )


class TurnAccepted(BaseModel):
    turn: TurnOut


class TurnList(ListPage):
    turns: list[TurnOut]


# -- events and approvals -------------------------------------------------------------


class EventOut(BaseModel):
    seq: int
    session_seq: int
    type: str
    data: dict[str, Any]
    created_at: UtcDatetime
    turn_id: str | None
    agent_id: str

    @classmethod
    def of(cls, event: StoredEvent) -> EventOut:
        return cls(
            seq=event.seq,
            session_seq=event.session_seq,
            type=event.type,
            data=event.data,
            created_at=event.created_at,
            turn_id=event.turn_id,
            agent_id=event.thread_id,
        )


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: int | None = None


class ApprovalOut(BaseModel):
    agent_id: str
    turn_id: str
    tool_call_id: str
    tool: str
    arguments: dict[str, Any]
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: Approval) -> ApprovalOut:
        return cls.model_validate(row, from_attributes=True)


class ApprovalList(ListPage):
    approvals: list[ApprovalOut]


class DecisionIn(Body):
    decision: Literal["allow_once", "allow_session", "deny"]


class DecisionAccepted(BaseModel):
    agent_id: str
    tool_call_id: str
    decision: str
