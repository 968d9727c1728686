"""The Anthropic Messages API as the fake speaks it (``POST /v1/messages``, ``GET /v1/models``)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakellm.replies import Answer, content_text, json_chunks

NAME = "anthropic"
ID_PREFIX = "msg_fake"
CALL_PREFIX = "toolu_fake"
REQUEST_ID_HEADER = "request-id"

Frame = tuple[bytes, bool]  # (one SSE event, whether it is a content chunk)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def conversation(body: dict[str, Any]) -> tuple[str, str | None]:
    """The last user text of the request, and the last tool result if it ends with one."""
    messages = body.get("messages") or []
    tool_result = None
    if messages and messages[-1].get("role") == "user":
        content = messages[-1].get("content")
        results = (
            [b for b in content if b.get("type") == "tool_result"]
            if isinstance(content, list)
            else []
        )
        if results:
            tool_result = content_text(results[-1].get("content")) or ""
    for message in reversed(messages):
        if (
            message.get("role") == "user"
            and (text := content_text(message.get("content"))) is not None
        ):
            return text, tool_result
    return "", tool_result


def conversation_error(body: dict[str, Any]) -> str | None:
    """Anthropic's 400 for a ``tool_use`` without its ``tool_result`` in the next message
    (or a ``tool_result`` without its ``tool_use`` in the previous one)."""
    messages = body.get("messages") or []
    for index, message in enumerate(messages):
        uses = [b.get("id") for b in _blocks(message) if b.get("type") == "tool_use"]
        following = messages[index + 1] if index + 1 < len(messages) else {}
        results = [
            b.get("tool_use_id") for b in _blocks(following) if b.get("type") == "tool_result"
        ]
        if missing := [u for u in uses if u not in results]:
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        if stray := [r for r in results if r not in uses]:
            return (
                f"messages.{index + 1}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(stray)}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
    return None


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def api_key(headers: dict[str, str]) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def error_body(status: int, message: str) -> dict[str, Any]:
    error_type = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


def auth_error(key: str | None) -> tuple[int, dict[str, Any]]:
    return 401, error_body(401, "invalid x-api-key")


def models_body(models: list[str]) -> dict[str, Any]:
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in models
    ]
    return {"data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]}


def message_body(answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.text_chunks or not answer.tool_calls:
        content.append({"type": "text", "text": "".join(answer.text_chunks)})
    for call_id, name, arguments in answer.tool_calls:
        content.append(
            {"type": "tool_use", "id": call_id, "name": name, "input": _input(arguments)}
        )
    return {
        "id": answer.message_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }


def _input(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # scripted malformed arguments stay malformed


def _event(data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (data["type"].encode(), json.dumps(data).encode())


_MALFORMED = (
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delt\n\n'
)


def stream_frames(answer: Answer) -> list[Frame]:
    """The SSE events of a streamed answer, exactly in Anthropic's order."""
    start = message_body(answer) | {"content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": answer.input_tokens, "output_tokens": 1}
    frames: list[Frame] = [
        (_event({"type": "message_start", "message": start}), False),
        (_event({"type": "ping"}), False),
    ]
    index = 0
    if answer.text_chunks or not answer.tool_calls:
        frames.append(_block_start(index, {"type": "text", "text": ""}))
        for chunk in answer.text_chunks:
            frames.append(_delta(index, {"type": "text_delta", "text": chunk}))
        frames.append(_block_stop(index))
        index += 1
    for call_id, name, arguments in answer.tool_calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        frames.append(_block_start(index, block))
        for piece in json_chunks(arguments):
            frames.append(_delta(index, {"type": "input_json_delta", "partial_json": piece}))
        frames.append(_block_stop(index))
        index += 1
    delta = {"stop_reason": answer.stop_reason, "stop_sequence": None}
    usage = {"output_tokens": answer.output_tokens}
    frames.append((_event({"type": "message_delta", "delta": delta, "usage": usage}), False))
    frames.append((_event({"type": "message_stop"}), False))
    if answer.malformed:
        frames.insert(_first_content_index(frames), (_MALFORMED, True))
    return frames


def _first_content_index(frames: list[Frame]) -> int:
    return next((i for i, (_, content) in enumerate(frames) if content), 3)


def _block_start(index: int, block: dict[str, Any]) -> Frame:
    return _event({"type": "content_block_start", "index": index, "content_block": block}), False


def _delta(index: int, delta: dict[str, Any]) -> Frame:
    return _event({"type": "content_block_delta", "index": index, "delta": delta}), True


def _block_stop(index: int) -> Frame:
    return _event({"type": "content_block_stop", "index": index}), False
