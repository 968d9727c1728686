"""The API's request and response shapes (API.md), separate from the table models.

Request bodies refuse unknown fields, so a misspelt field is a 422 rather than
silently ignored. Timestamps are serialized as ISO-8601 UTC. Each body and
response model carries examples for the OpenAPI documentation (``/docs``).
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
from pydantic.config import JsonDict

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


def _examples(*examples: JsonDict) -> ConfigDict:
    """A ``model_config`` that documents the model with these examples in OpenAPI.

    FastAPI drops null values from the published document, examples' too (fastapi#5559):
    request examples therefore set no field to null (a PATCH's null would vanish).
    """
    return ConfigDict(json_schema_extra={"examples": [*examples]})


def _document(model: type[BaseModel], *examples: JsonDict) -> None:
    """Examples for a model defined outside the API (its schema is read when docs are built)."""
    model.model_config["json_schema_extra"] = {"examples": [*examples]}


# -- values the examples share (ids as the API makes them) ----------------------------

_PROJECT_ID = "prj_3f9c2a7b1d8e4c60"
_SESSION_ID = "ses_8a41c7e2b95d03f6"
_COORDINATOR_ID = f"{_SESSION_ID}.1"
_AGENT_ID = f"{_SESSION_ID}.2"
_TURN_ID = "turn_5b0e9d2c71a4f836"
_TOOL_CALL_ID = "tc_9d27e4a1c03b58f2"
_INSTANCE_ID = "anthropic-prod"
_CONFIGURATION: JsonDict = {
    "provider_instance_id": _INSTANCE_ID,
    "model_id": "claude-sonnet-4-6",
    "tool_policies": {"bash": "ask", "file_write": "allow"},
    "system_prompt": "You maintain the billing service. Keep changes small and tested.",
}
_PROJECT: JsonDict = {
    "id": _PROJECT_ID,
    "name": "billing-service",
    "working_directory": "/srv/bobbin/workspaces/billing-service",
    "configuration": _CONFIGURATION,
    "budget": {"max_cost_usd": "50", "window": "month"},
    "spent_usd": "3.4172",
    "created_at": "2025-06-02T08:15:42.118305Z",
}
_SESSION: JsonDict = {
    "id": _SESSION_ID,
    "project_id": _PROJECT_ID,
    "name": "fix flaky invoice tests",
    "configuration": {"model_settings": {"max_output_tokens": 8000, "temperature": 0.2}},
    "budget": {"max_cost_usd": "5", "window": "total"},
    "spent_usd": "0.4381",
    "coordinator_agent_id": _COORDINATOR_ID,
    "approved_tools": ["url_fetch"],
    "created_at": "2025-06-03T14:20:55.904211Z",
}
_COORDINATOR: JsonDict = {
    "id": _COORDINATOR_ID,
    "session_id": _SESSION_ID,
    "name": "coordinator",
    "provider_instance_id": _INSTANCE_ID,
    "model_id": "claude-sonnet-4-6",
    "status": "running",
    "overrides": {},
}
_AGENT: JsonDict = {
    "id": _AGENT_ID,
    "session_id": _SESSION_ID,
    "name": "reviewer",
    "provider_instance_id": _INSTANCE_ID,
    "model_id": "claude-haiku-4-5",
    "status": "idle",
    "overrides": {
        "model_id": "claude-haiku-4-5",
        "system_prompt": "Review diffs for bugs and missing tests; do not edit files.",
    },
}
_INSTANCE: JsonDict = {
    "id": _INSTANCE_ID,
    "name": "Anthropic (production)",
    "catalog_provider_id": "anthropic",
    "base_url": "https://api.anthropic.com",
    "timeout_s": 120.0,
    "has_credential": True,
    "models": [],
    "limits": {"requests_per_minute": 1000, "max_concurrent_requests": 50},
    "cooldowns": [],
}
_LOCAL_MODEL: JsonDict = {
    "id": "qwen2.5-coder:32b",
    "context_window": 32768,
    "supports_tools": True,
}
_LOCAL_INSTANCE: JsonDict = {
    "id": "ollama-gpu1",
    "name": "Ollama on gpu1",
    "catalog_provider_id": "openai-compatible",
    "base_url": "http://gpu1.internal:11434/v1",
    "timeout_s": 300.0,
    "has_credential": False,
    "models": [_LOCAL_MODEL],
    "limits": {"max_concurrent_requests": 4},
    "cooldowns": [],
}
_COOLDOWN: JsonDict = {"model_id": "claude-sonnet-4-6", "until": "2025-06-03T14:21:37.250000Z"}
_QUESTION = "Why does test_invoice_totals fail on CI but not locally?"
_QUEUED_TURN: JsonDict = {
    "id": _TURN_ID,
    "agent_id": _COORDINATOR_ID,
    "session_id": _SESSION_ID,
    "status": "queued",
    "input": _QUESTION,
    "output": None,
    "attempt": 0,
    "position": 3,
    "provider_instance_id": None,
    "model_id": None,
    "created_at": "2025-06-03T14:21:07.412583Z",
    "started_at": None,
    "finished_at": None,
}
_COMPLETED_TURN: JsonDict = _QUEUED_TURN | {
    "status": "completed",
    "output": "The test depends on the local timezone: invoice dates are built with "
    "datetime.now(). I switched them to UTC in tests/test_invoices.py.",
    "attempt": 1,
    "provider_instance_id": _INSTANCE_ID,
    "model_id": "claude-sonnet-4-6",
    "started_at": "2025-06-03T14:21:07.530912Z",
    "finished_at": "2025-06-03T14:21:31.084417Z",
    "usage": {
        "input_tokens": 1840,
        "output_tokens": 312,
        "cost_usd": "0.0102",
        "estimated": False,
    },
}
_FAILED_TURN: JsonDict = _QUEUED_TURN | {
    "id": "turn_e04f6a9b2d17c385",
    "status": "failed",
    "attempt": 1,
    "position": 2,
    "provider_instance_id": _INSTANCE_ID,
    "model_id": "claude-sonnet-4-6",
    "input": "Run the test suite and summarise the failures.",
    "created_at": "2025-06-03T14:20:58.003817Z",
    "started_at": "2025-06-03T14:20:58.120664Z",
    "finished_at": "2025-06-03T14:20:59.402118Z",
    "error": {
        "code": "provider_auth_failed",
        "message": "the provider refused the credential (401): check the instance's api_key",
        "retryable": False,
    },
}
_CANCELLED_TURN: JsonDict = _QUEUED_TURN | {
    "status": "cancelled",
    "finished_at": "2025-06-03T14:21:09.771036Z",
}
_WAITING_TURN: JsonDict = _QUEUED_TURN | {
    "attempt": 1,
    "started_at": "2025-06-03T14:21:07.530912Z",
    "waiting": {"reason": "provider_cooldown", "until": "2025-06-03T14:21:37Z"},
}


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
    model_config = _examples(
        {
            "error": {
                "code": "session_not_found",
                "message": f"session '{_SESSION_ID}' does not exist",
            }
        },
    )

    error: ErrorDetail


# -- health ---------------------------------------------------------------------------


class HealthOut(BaseModel):
    model_config = _examples({"status": "ok"})

    status: str


class ReadinessOut(BaseModel):
    model_config = _examples({"status": "ok", "checks": {"database": "ok", "redis": "ok"}})

    status: str
    checks: dict[str, str]


class UnreadyOut(ReadinessOut):
    model_config = _examples(
        {
            "status": "unavailable",
            "checks": {"database": "ok", "redis": "unavailable"},
            "error": {"code": "service_unavailable", "message": "unavailable: redis"},
        }
    )

    error: ErrorDetail


# -- providers ------------------------------------------------------------------------


class CatalogOut(ListPage):
    model_config = _examples(
        {
            "providers": [
                {
                    "id": "anthropic",
                    "name": "Anthropic",
                    "type": "anthropic",
                    "default_base_url": "https://api.anthropic.com",
                    "models": [
                        {
                            "id": "claude-sonnet-4-6",
                            "name": "Claude Sonnet 4.6",
                            "context_window": 200000,
                            "max_output_tokens": 64000,
                            "supports_tools": True,
                            "cost_per_mtok_in": 3.0,
                            "cost_per_mtok_out": 15.0,
                            "reasoning": False,
                        }
                    ],
                },
                {
                    "id": "openai-compatible",
                    "name": "OpenAI-compatible server (Ollama, LM Studio, vLLM, llama.cpp, "
                    "OpenRouter)",
                    "type": "openai-compatible",
                    "default_base_url": "http://127.0.0.1:8080/v1",
                    "models": [
                        {
                            "id": "llama3.1",
                            "name": "Llama 3.1 (Ollama)",
                            "context_window": 131072,
                            "max_output_tokens": 8192,
                            "supports_tools": True,
                            "cost_per_mtok_in": 0.0,
                            "cost_per_mtok_out": 0.0,
                            "reasoning": False,
                        }
                    ],
                },
            ],
            "next_cursor": None,
        }
    )

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
    model_config = _examples(
        {
            "id": _INSTANCE_ID,
            "name": "Anthropic (production)",
            "catalog_provider_id": "anthropic",
            "base_url": "https://api.anthropic.com",
            "timeout_s": 120.0,
            "credential": {"api_key": "sk-ant-api03-REPLACE-WITH-YOUR-KEY"},
            "limits": {"requests_per_minute": 1000, "max_concurrent_requests": 50},
        },
        {
            "id": "ollama-gpu1",
            "name": "Ollama on gpu1",
            "catalog_provider_id": "openai-compatible",
            "base_url": "http://gpu1.internal:11434/v1",
            "timeout_s": 300.0,
            "models": [_LOCAL_MODEL],
            "limits": {"max_concurrent_requests": 4},
        },
    )

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
    model_config = _examples(
        {"credential": {"api_key": "sk-ant-api03-REPLACE-WITH-YOUR-NEW-KEY"}},
        {"timeout_s": 180.0, "limits": {"requests_per_minute": 500}},
    )

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
    model_config = _examples(
        {"provider_instances": [_INSTANCE, _LOCAL_INSTANCE], "next_cursor": None}
    )

    provider_instances: list[InstanceView]


class InstanceTestIn(Body):
    model_config = _examples({"model_id": "claude-haiku-4-5"})

    model_id: Name | None = None


class InstanceTestOut(BaseModel):
    model_config = _examples(
        {"ok": True, "models": ["claude-haiku-4-5", "claude-opus-4-7", "claude-sonnet-4-6"]},
        {
            "ok": False,
            "error": {
                "code": "provider_unreachable",
                "message": "cannot reach http://gpu1.internal:11434/v1: connection refused",
                "retryable": True,
            },
        },
    )

    ok: bool
    models: list[str] | None = None
    error: dict[str, Any] | None = None


# -- projects and sessions ------------------------------------------------------------


class BudgetIn(Body):
    """At most ``max_cost_usd`` (a decimal string) of model calls per UTC ``window``."""

    max_cost_usd: Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,9})?$")]
    window: Literal["total", "day", "month"] = "total"


class ProjectCreate(Body):
    model_config = _examples(
        {
            "name": "billing-service",
            "working_directory": "/srv/bobbin/workspaces/billing-service",
            "configuration": _CONFIGURATION,
            "budget": {"max_cost_usd": "50", "window": "month"},
        },
        {
            "name": "scratch",
            "configuration": {"provider_instance_id": "ollama-gpu1", "model_id": "llama3.1"},
        },
    )

    name: Name
    working_directory: DirectoryPath | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class ProjectUpdate(PatchBody):
    model_config = _examples(
        {"configuration": {"model_id": "claude-opus-4-7", "tool_policies": {"bash": "deny"}}},
        {"name": "billing-api", "budget": {"max_cost_usd": "100", "window": "month"}},
    )

    name: Name | None = None
    working_directory: DirectoryPath | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class ProjectOut(BaseModel):
    model_config = _examples(_PROJECT)

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
    model_config = _examples({"projects": [_PROJECT], "next_cursor": None})

    projects: list[ProjectOut]


class SessionCreate(Body):
    model_config = _examples(
        {
            "name": "fix flaky invoice tests",
            "configuration": {"model_settings": {"max_output_tokens": 8000, "temperature": 0.2}},
        },
        {"name": "nightly triage", "budget": {"max_cost_usd": "2.50", "window": "day"}},
    )

    name: Name
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class SessionUpdate(PatchBody):
    model_config = _examples(
        {"name": "fix flaky invoice and tax tests"},
        {"configuration": {"model_settings": {"temperature": 0}}, "budget": {"max_cost_usd": "10"}},
    )

    name: Name | None = None
    configuration: Configuration | None = None
    budget: BudgetIn | None = None


class SessionOut(BaseModel):
    model_config = _examples(_SESSION)

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
    model_config = _examples({"sessions": [_SESSION], "next_cursor": None})

    sessions: list[SessionOut]


# -- agents ---------------------------------------------------------------------------


class AgentCreate(Configuration):
    """An agent's name and the configuration it sets itself (the rest is inherited)."""

    model_config = _examples(
        {
            "name": "reviewer",
            "model_id": "claude-haiku-4-5",
            "system_prompt": "Review diffs for bugs and missing tests; do not edit files.",
        },
        {"name": "local-helper", "provider_instance_id": "ollama-gpu1", "model_id": "llama3.1"},
    )

    name: Name


class AgentUpdate(Configuration):
    """Switch provider or model from the next turn on; null drops the agent's own value."""

    model_config = _examples(
        {"model_id": "claude-opus-4-7", "model_settings": {"reasoning_effort": "high"}},
        {"name": "strict-reviewer", "tool_policies": {"file_write": "deny", "bash": "deny"}},
    )

    name: Name | None = None

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("may not be null")
        return value


class AgentList(ListPage):
    model_config = _examples({"agents": [_COORDINATOR, _AGENT], "next_cursor": None})

    agents: list[AgentView]


# -- messages and turns ---------------------------------------------------------------


class MessageIn(Body):
    model_config = _examples({"content": _QUESTION})

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
    model_config = _examples(_COMPLETED_TURN, _FAILED_TURN, _WAITING_TURN)

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

    # No return annotation: pydantic would take it (a dict) as the answer's JSON schema,
    # and OpenAPI would show a bare object instead of the turn's fields.
    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler):
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
    model_config = _examples({"turn": _QUEUED_TURN}, {"turn": _CANCELLED_TURN})

    turn: TurnOut


class TurnList(ListPage):
    model_config = _examples({"turns": [_COMPLETED_TURN, _FAILED_TURN], "next_cursor": "2"})

    turns: list[TurnOut]


# -- events and approvals -------------------------------------------------------------


def _event(seq: int, type_: str, data: JsonDict, time: str) -> JsonDict:
    """An example event of the coordinator's third turn (other agents' events come between)."""
    return {
        "seq": seq,
        "session_seq": seq + 6,
        "type": type_,
        "data": data,
        "created_at": f"2025-06-03T{time}Z",
        "turn_id": _TURN_ID,
        "agent_id": _COORDINATOR_ID,
    }


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
    model_config = _examples(
        {
            "events": [
                _event(14, "user_message", {"content": _QUESTION}, "14:21:07.561208"),
                _event(
                    15,
                    "turn_started",
                    {"provider_instance_id": _INSTANCE_ID, "model_id": "claude-sonnet-4-6"},
                    "14:21:07.561208",
                ),
                _event(
                    16,
                    "tool_call",
                    {
                        "tool_call_id": _TOOL_CALL_ID,
                        "provider_call_id": "toolu_01A09q90qw90lq917835lq9",
                        "tool": "bash",
                        "arguments": {"command": "pytest -q tests/test_invoices.py"},
                        "round": 1,
                    },
                    "14:21:12.930457",
                ),
            ],
            "next_cursor": 16,
        }
    )

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
    model_config = _examples(
        {
            "approvals": [
                {
                    "agent_id": _COORDINATOR_ID,
                    "turn_id": _TURN_ID,
                    "tool_call_id": _TOOL_CALL_ID,
                    "tool": "bash",
                    "arguments": {"command": "pytest -q tests/test_invoices.py"},
                    "created_at": "2025-06-03T14:21:12.930457Z",
                }
            ],
            "next_cursor": None,
        }
    )

    approvals: list[ApprovalOut]


class DecisionIn(Body):
    model_config = _examples({"decision": "allow_once"}, {"decision": "deny"})

    decision: Literal["allow_once", "allow_session", "deny"]


class DecisionAccepted(BaseModel):
    model_config = _examples(
        {"agent_id": _COORDINATOR_ID, "tool_call_id": _TOOL_CALL_ID, "decision": "allow_once"}
    )

    agent_id: str
    tool_call_id: str
    decision: str


# Response models defined outside the API: documented here, where the API shows them.
_document(AgentView, _AGENT, _COORDINATOR)
_document(InstanceView, _INSTANCE | {"cooldowns": [_COOLDOWN]}, _LOCAL_INSTANCE)
