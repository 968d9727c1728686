"""The provider interface: a provider turns a conversation into a stream of typed events.

Providers are cheap objects the registry makes per turn; the HTTP connection
pool under them belongs to the process (``httpx2.AsyncClient`` in Resources).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field

from shared.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderUnreachable,
)


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
    type: Literal["usage"] = "usage"
    input_tokens: int = 0
    output_tokens: int = 0


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


class Provider(Protocol):
    """What every provider kind implements."""

    kind: str
    model_id: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas, then each tool call whole, then usage, then one stop.

        Raises ``ProviderError`` subclasses only: SDK exceptions are mapped at
        the provider's edge. Makes one attempt: retries belong to ``retry.py``.
        """
        ...

    def estimate_tokens(self, request: ModelRequest) -> int:
        """A cheap local estimate of the request's input tokens (no network)."""
        ...

    async def list_models(self) -> list[str]:
        """The models the endpoint serves (one network call; used to test an instance)."""
        ...


def estimate_text_tokens(text: str) -> int:
    """About four characters a token: the usual rule of thumb for English text."""
    return (len(text) + 3) // 4


def estimate_request_tokens(request: ModelRequest) -> int:
    """A local estimate of a request's input tokens: its text, tool calls and tool specs."""
    parts = [request.system or ""]
    for message in request.messages:
        parts.append(message.content)
        parts += [f"{c.name}{json.dumps(c.arguments)}" for c in message.tool_calls]
    parts += [f"{t.name}{t.description}{json.dumps(t.input_schema)}" for t in request.tools]
    overhead = 4 * len(request.messages)  # role markers and separators
    return sum(estimate_text_tokens(part) for part in parts) + overhead


# -- the error edge shared by provider modules -------------------------------------

MAX_DETAIL_CHARS = 300


def redact(text: str, secret: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` (taken from a server or an SDK) without ``secret``, cut to ``limit`` characters."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_detail(body: object, fallback: str) -> str:
    """The human message of a provider's error body (``{"error": {"message": ...}}`` and kin)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    if isinstance(body, str) and body:
        return body
    return fallback


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return None


def error_for_status(
    status: int,
    detail: str,
    *,
    provider: str,
    secret: str,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The Bobbin error for an HTTP error answer of a provider.

    401/402/403 -> ``ProviderAuthFailed``; 429 -> ``ProviderRateLimited`` (with
    Retry-After); 408 -> ``ProviderUnreachable``; 409, 499 and 5xx (529:
    overloaded) -> ``ProviderError`` (retryable); any other status ->
    ``ProviderBadRequest`` (not retryable). ``detail`` is redacted and capped.
    """
    message = f"{provider} answered HTTP {status}: {redact(detail, secret)}"
    if status in (401, 402, 403):
        return ProviderAuthFailed(message)
    if status == 429:
        return ProviderRateLimited(message, retry_after_s(headers or {}))
    if status == 408:
        return ProviderUnreachable(message)
    if status in (409, 499) or status >= 500:
        return ProviderError(message)
    return ProviderBadRequest(message)


def scrub_exception(exc: BaseException, secret: str) -> None:
    """Redact ``secret`` from an SDK exception's text (tracebacks show the chained cause)."""
    exc.args = tuple(redact(a, secret, limit=10_000) if isinstance(a, str) else a for a in exc.args)
    if isinstance(message := getattr(exc, "message", None), str):
        with contextlib.suppress(AttributeError):
            exc.message = redact(message, secret, limit=10_000)  # type: ignore[attr-defined]
