"""The model interface: what an agent asks a model, and what the model streams back.

A leaf module: providers implement ``Provider``, tools describe themselves
as ``ToolSpec``s, agents build ``ModelRequest``s from their threads, and none
of them imports another to reach these types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

ReasoningEffort = Literal["low", "medium", "high"]


class ModelInfo(BaseModel):
    """What Bobbin knows of the model a provider calls: the catalog's values, overridden
    field by field by what the instance declares (API.md v1.1, ``models``); a model
    neither knows has no limits and no price (None)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool = True
    cost_per_mtok_in: float | None = None
    cost_per_mtok_out: float | None = None
    reasoning: bool = False

    @property
    def priced(self) -> bool:
        return self.cost_per_mtok_in is not None and self.cost_per_mtok_out is not None


class ToolCallRequest(BaseModel):
    """A tool call as the model made it; ``id`` is the provider's own call id."""

    id: str
    name: str
    arguments: dict[str, Any]


class ChatMessage(BaseModel):
    """One message of the provider-neutral conversation.

    ``user``: ``content``. ``assistant``: ``content`` and ``tool_calls``.
    ``tool``: the result of the call ``tool_call_id`` in ``content``.
    """

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCallRequest] = []
    tool_call_id: str | None = None
    is_error: bool = False


class ToolSpec(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ToolCallEvent(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    call: ToolCallRequest


class UsageEvent(BaseModel):
    """The tokens the server counted; ``reported`` False when it sent none (some
    compatible servers ignore ``stream_options.include_usage``)."""

    type: Literal["usage"] = "usage"
    input_tokens: int = 0
    output_tokens: int = 0
    reported: bool = True


StopReason = Literal["end_turn", "tool_use", "max_tokens", "other"]


class StopEvent(BaseModel):
    type: Literal["stop"] = "stop"
    reason: StopReason


ProviderEvent = Annotated[
    TextDelta | ToolCallEvent | UsageEvent | StopEvent, Field(discriminator="type")
]


class ModelRequest(BaseModel):
    model_id: str
    system: str | None = None
    messages: list[ChatMessage]
    tools: list[ToolSpec] = []
    max_tokens: int = 4096
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    reasoning_effort: ReasoningEffort | None = None


class Provider(Protocol):
    """What every provider kind implements."""

    kind: str
    model_id: str
    model: ModelInfo

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas, then each tool call whole, then usage, then one stop.

        Raises ``ProviderError`` subclasses only: SDK exceptions are mapped at
        the provider's edge. Makes one attempt: retries belong to ``retry.py``.
        """
        ...

    def estimate_tokens(self, request: ModelRequest) -> int:
        """A cheap local estimate of the request's input tokens (no network)."""
        ...

    def ignored(self, request: ModelRequest) -> list[str]:
        """The request's settings this provider kind or model cannot send (it leaves
        them out of the request)."""
        ...

    async def list_models(self) -> list[str]:
        """The models the endpoint serves (one network call; used to test an instance)."""
        ...
