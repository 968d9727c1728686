"""The OpenAI Chat Completions provider (kinds ``openai`` and ``openai-compatible``).

URL convention: ``base_url`` *includes* ``/v1`` (``https://api.openai.com/v1``,
``http://localhost:11434/v1`` for Ollama, or a fake server's
``http://127.0.0.1:PORT/v1``); the SDK appends ``/chat/completions`` and
``/models``. An ``openai-compatible`` instance without a credential may pass
an empty key: a placeholder is sent instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from shared.errors import ProviderError, ProviderUnreachable
from shared.llm import (
    ChatMessage,
    ModelInfo,
    ModelRequest,
    ProviderEvent,
    StopEvent,
    StopReason,
    TextDelta,
    ToolCallEvent,
    ToolCallRequest,
    UsageEvent,
)
from shared.providers.base import (
    error_detail,
    error_for_status,
    estimate_request_tokens,
    redact,
    scrub_exception,
)

KINDS = ("openai", "openai-compatible")
PLACEHOLDER_KEY = "bobbin-no-key"
_PROVIDER = "OpenAI"
_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
}
# What the SDK and the stream under it raise: SDK errors, transport errors
# mid-stream, invalid JSON (ValueError) and payloads missing what we read.
_EDGE_ERRORS = (openai.OpenAIError, httpx2.HTTPError, ValueError, AttributeError, TypeError)


class OpenAIProvider:
    """Streams OpenAI chat completions; raises ``ProviderError`` subclasses only."""

    def __init__(
        self,
        *,
        http_client: httpx2.AsyncClient,
        api_key: str,
        base_url: str,
        model: ModelInfo,
        timeout_s: float,
        kind: str = "openai",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"OpenAIProvider serves {KINDS}, not {kind!r}")
        self.kind = kind
        self.model = model
        self.model_id = model.id
        self._api_key = api_key
        self._label = _PROVIDER if kind == "openai" else f"{_PROVIDER}-compatible server"
        # Key and URL always explicit: else the SDK reads OPENAI_* from the environment.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )
        # The SDK fills these from OPENAI_ORG_ID / OPENAI_PROJECT_ID / OPENAI_ADMIN_KEY.
        self._client.organization = None
        self._client.project = None
        self._client.admin_api_key = None

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas, each tool call whole, usage, then one stop (one attempt)."""
        try:
            chunks = await self._client.chat.completions.create(**self._params(request))
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key, self._label) from exc
        try:
            async with chunks:
                async for event in _translate(chunks, self._label):
                    yield event
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key, self._label, mid_stream=True) from exc

    def estimate_tokens(self, request: ModelRequest) -> int:
        return estimate_request_tokens(request)

    def ignored(self, request: ModelRequest) -> list[str]:
        """A reasoning model takes an effort and refuses a temperature or top_p; other
        models (and compatible servers, which differ) are sent no effort."""
        if self.model.reasoning and self.kind == "openai":
            return [n for n in ("temperature", "top_p") if getattr(request, n) is not None]
        return ["reasoning_effort"] if request.reasoning_effort else []

    async def list_models(self) -> list[str]:
        """The ids of the models the server offers (``GET {base_url}/models``)."""
        try:
            return [model.id async for model in self._client.models.list()]
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key, self._label) from exc

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        messages = _wire_messages(request.messages)
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        # OpenAI's reasoning models accept only max_completion_tokens; most compatible
        # servers (vLLM, Ollama, llama.cpp) know only max_tokens.
        limit = "max_completion_tokens" if self.kind == "openai" else "max_tokens"
        params: dict[str, Any] = {
            "model": request.model_id,
            "messages": messages,
            limit: request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        ignored = self.ignored(request)
        settings = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": request.stop or None,
            "reasoning_effort": request.reasoning_effort,
        }
        params |= {k: v for k, v in settings.items() if v is not None and k not in ignored}
        return params


def _wire_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "user":
            wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.content or None}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in message.tool_calls
                ]
            wire.append(entry)
        else:
            wire.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
    return wire


async def _translate(chunks: AsyncIterator[Any], provider: str) -> AsyncIterator[ProviderEvent]:
    """Chat completion chunks as our events; a stream without a finish reason is an error.

    Lenient where compatible servers differ: a chunk may lack ``choices`` or
    ``usage``, a final chunk may have no ``delta``, a tool call may lack ``index``.
    """
    calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
    finish_reason: str | None = None
    usage = None
    async for chunk in chunks:
        usage = getattr(chunk, "usage", None) or usage
        for choice in getattr(chunk, "choices", None) or ():
            if choice.index:
                continue
            delta = choice.delta
            if delta is not None and delta.content:
                yield TextDelta(text=delta.content)
            for piece in (delta.tool_calls if delta is not None else None) or ():
                _add_piece(calls, piece)
            if choice.finish_reason and finish_reason is None:
                finish_reason = choice.finish_reason
                for index in sorted(calls):
                    yield ToolCallEvent(call=_tool_call(index, *calls[index], provider=provider))
    if finish_reason is None:
        raise ProviderError(f"{provider}'s stream ended without a finish reason")
    yield UsageEvent(
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        reported=usage is not None,
    )
    yield StopEvent(reason=_STOP_REASONS.get(finish_reason, "other"))


def _add_piece(calls: dict[int, list[Any]], piece: Any) -> None:
    index = piece.index if isinstance(piece.index, int) else len(calls)
    call = calls.setdefault(index, ["", "", []])
    call[0] = piece.id or call[0]
    if piece.function is not None:
        call[1] = piece.function.name or call[1]
        call[2].append(piece.function.arguments or "")


def _tool_call(
    index: int, call_id: str, name: str, pieces: list[str], *, provider: str
) -> ToolCallRequest:
    if not name:
        raise ProviderError(f"{provider} sent a tool call without a name")
    try:
        arguments = json.loads("".join(pieces) or "{}")
    except ValueError as exc:
        raise ProviderError(f"{provider} sent invalid JSON arguments for tool {name!r}") from exc
    if not isinstance(arguments, dict):
        raise ProviderError(f"{provider} sent non-object arguments for tool {name!r}")
    return ToolCallRequest(id=call_id or f"call_{index}", name=name, arguments=arguments)


def map_error(
    exc: Exception, api_key: str, provider: str = _PROVIDER, *, mid_stream: bool = False
) -> ProviderError:
    """The Bobbin error for anything raised at the SDK edge; never carries the key.

    A connection lost after the answer began (``mid_stream``) is a broken
    answer (``provider_error``), not an unreachable server.
    """
    scrub_exception(exc, api_key)
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(
            exc.status_code,
            error_detail(exc.body, exc.message),
            provider=provider,
            secret=api_key,
            headers=exc.response.headers,
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderUnreachable(f"{provider} did not answer within the timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        cause = exc.__cause__ or exc
        if mid_stream:
            return ProviderError(redact(f"{provider}'s answer broke off: {cause}", api_key))
        return ProviderUnreachable(redact(f"cannot reach {provider}: {cause}", api_key))
    detail = redact(f"{type(exc).__name__}: {exc}", api_key)
    return ProviderError(f"{provider} sent an unexpected payload ({detail})")
