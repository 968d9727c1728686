"""The Anthropic Messages API provider (kind ``anthropic``).

URL convention: ``base_url`` is the server root *without* ``/v1``
(``https://api.anthropic.com``, or a fake server's ``http://127.0.0.1:PORT``);
the SDK appends ``/v1/messages`` and ``/v1/models`` itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from shared.errors import ProviderAuthFailed, ProviderError, ProviderUnreachable
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

_PROVIDER = "Anthropic"
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
}
# An ``event: error`` inside a 200 stream names its error type, not a status.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
# What the SDK and the stream under it raise: SDK errors, transport errors
# mid-stream, invalid JSON (ValueError) and payloads missing what we read.
_EDGE_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError, ValueError, AttributeError, TypeError)


class AnthropicProvider:
    """Streams Anthropic Messages; raises ``ProviderError`` subclasses only."""

    def __init__(
        self,
        *,
        http_client: httpx2.AsyncClient,
        api_key: str,
        base_url: str,
        model: ModelInfo,
        timeout_s: float,
        kind: str = "anthropic",
    ) -> None:
        self.kind = kind
        self.model = model
        self.model_id = model.id
        self._api_key = api_key
        # Key and URL always explicit: else the SDK reads ANTHROPIC_* from the environment.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        """Yield text deltas, each tool call whole, usage, then one stop (one attempt)."""
        try:
            sdk_stream = await self._client.messages.create(**_request_params(request), stream=True)
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key) from exc
        try:
            async with sdk_stream:
                async for event in _translate(sdk_stream):
                    yield event
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key, mid_stream=True) from exc

    def estimate_tokens(self, request: ModelRequest) -> int:
        return estimate_request_tokens(request)

    def ignored(self, request: ModelRequest) -> list[str]:
        """The Messages API takes an effort (``output_config``), not a temperature or top_p."""
        return [n for n in ("temperature", "top_p") if getattr(request, n) is not None]

    async def list_models(self) -> list[str]:
        """The ids of the models the key can use (``GET /v1/models``)."""
        try:
            return [model.id async for model in self._client.models.list()]
        except _EDGE_ERRORS as exc:
            raise map_error(exc, self._api_key) from exc


def _request_params(request: ModelRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model_id,
        "max_tokens": request.max_tokens,
        "messages": _wire_messages(request.messages),
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in request.tools
        ]
    if request.stop:
        params["stop_sequences"] = request.stop
    if request.reasoning_effort:
        params["output_config"] = {"effort": request.reasoning_effort}
    return params


def _wire_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Our conversation as Anthropic messages; consecutive tool results share one user message."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "user":
            wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in message.tool_calls
            ]
            if blocks:
                wire.append({"role": "assistant", "content": blocks})
        else:
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.is_error:
                result["is_error"] = True
            previous = wire[-1] if wire else None
            if previous and previous["role"] == "user" and isinstance(previous["content"], list):
                previous["content"].append(result)
            else:
                wire.append({"role": "user", "content": [result]})
    return wire


async def _translate(events: AsyncIterator[Any]) -> AsyncIterator[ProviderEvent]:
    """Anthropic's raw stream events as ours; a stream without ``message_stop`` is an error."""
    input_tokens = output_tokens = 0
    stop_reason: str | None = None
    stopped = False
    tool_blocks: dict[int, tuple[str, str, list[str]]] = {}
    async for event in events:
        if event.type == "message_start":
            input_tokens = event.message.usage.input_tokens or 0
            output_tokens = event.message.usage.output_tokens or 0
        elif event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            tool_blocks[event.index] = (block.id, block.name, [])
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta" and event.delta.text:
                yield TextDelta(text=event.delta.text)
            elif event.delta.type == "input_json_delta":
                tool_blocks[event.index][2].append(event.delta.partial_json)
        elif event.type == "content_block_stop" and event.index in tool_blocks:
            call_id, name, parts = tool_blocks.pop(event.index)
            arguments = _parse_arguments(name, "".join(parts))
            yield ToolCallEvent(call=ToolCallRequest(id=call_id, name=name, arguments=arguments))
        elif event.type == "message_delta":
            stop_reason = event.delta.stop_reason or stop_reason
            output_tokens = event.usage.output_tokens or output_tokens
            input_tokens = event.usage.input_tokens or input_tokens
        elif event.type == "message_stop":
            stopped = True
    if not stopped:
        raise ProviderError(f"{_PROVIDER}'s stream ended before message_stop")
    yield UsageEvent(input_tokens=input_tokens, output_tokens=output_tokens)
    yield StopEvent(reason=_STOP_REASONS.get(stop_reason or "", "other"))


def _parse_arguments(name: str, raw: str) -> dict[str, Any]:
    try:
        arguments = json.loads(raw or "{}")
    except ValueError as exc:
        raise ProviderError(f"{_PROVIDER} sent invalid JSON arguments for tool {name!r}") from exc
    if not isinstance(arguments, dict):
        raise ProviderError(f"{_PROVIDER} sent non-object arguments for tool {name!r}")
    return arguments


def map_error(exc: Exception, api_key: str, *, mid_stream: bool = False) -> ProviderError:
    """The Bobbin error for anything raised at the SDK edge; never carries the key.

    A connection lost after the answer began (``mid_stream``) is a broken
    answer (``provider_error``), not an unreachable server.
    """
    scrub_exception(exc, api_key)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:
            status = _ERROR_TYPE_STATUS.get(str(exc.type), 500)
        return error_for_status(
            status,
            error_detail(exc.body, exc.message),
            provider=_PROVIDER,
            secret=api_key,
            headers=exc.response.headers,
        )
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ProviderUnreachable(f"{_PROVIDER} did not answer within the timeout")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
        cause = exc.__cause__ or exc
        if mid_stream:
            return ProviderError(redact(f"{_PROVIDER}'s answer broke off: {cause}", api_key))
        return ProviderUnreachable(redact(f"cannot reach {_PROVIDER}: {cause}", api_key))
    if isinstance(exc, anthropic.CredentialsError):
        return ProviderAuthFailed(redact(f"{_PROVIDER} credentials unusable: {exc}", api_key))
    detail = redact(f"{type(exc).__name__}: {exc}", api_key)
    return ProviderError(f"{_PROVIDER} sent an unexpected payload ({detail})")
