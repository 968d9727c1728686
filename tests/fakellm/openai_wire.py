"""The OpenAI Chat Completions API as the fake speaks it (``POST /v1/chat/completions``)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakellm.replies import Answer, content_text, json_chunks

NAME = "openai"
ID_PREFIX = "chatcmpl-fake"
CALL_PREFIX = "call_fake"
REQUEST_ID_HEADER = "x-request-id"
CREATED = 1_700_000_000

Frame = tuple[bytes, bool]  # (one SSE event, whether it is a content chunk)

_FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}
_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def conversation(body: dict[str, Any]) -> tuple[str, str | None]:
    """The last user text of the request, and the last tool result if it ends with one."""
    messages = body.get("messages") or []
    tool_result = None
    if messages and messages[-1].get("role") == "tool":
        tool_result = content_text(messages[-1].get("content")) or ""
    for message in reversed(messages):
        if (
            message.get("role") == "user"
            and (text := content_text(message.get("content"))) is not None
        ):
            return text, tool_result
    return "", tool_result


def conversation_error(body: dict[str, Any]) -> str | None:
    """OpenAI's 400 for a conversation whose tool calls and tool messages do not pair up."""
    unanswered: list[str] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            unanswered.remove(call_id)
            continue
        if unanswered:
            break
        unanswered = [call.get("id") for call in message.get("tool_calls") or []]
    if unanswered:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(unanswered)}"
        )
    return None


def api_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def error_body(status: int, message: str) -> dict[str, Any]:
    error_type, code = _ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def auth_error(key: str | None) -> tuple[int, dict[str, Any]]:
    """OpenAI's real 401 names a masked form of the key it was given."""
    masked = f"{key[:3]}{'*' * 8}{key[-4:]}" if key and len(key) > 8 else "***"
    message = (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return 401, error_body(401, message)


def models_body(models: list[str]) -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "fakellm"} for m in models]
    return {"object": "list", "data": data}


def _tool_call(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return {"index": index, "id": call_id, "type": "function", "function": function}


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def message_body(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(answer.text_chunks) or None,
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {k: v for k, v in _tool_call(0, *call).items() if k != "index"}
            for call in answer.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _FINISH_REASONS[answer.stop_reason],
    }
    return {
        "id": answer.message_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": answer.model,
        "choices": [choice],
        "usage": _usage(answer),
        "system_fingerprint": None,
    }


_MALFORMED = b'data: {"id": "chatcmpl-broken", "object": "chat.completion.chunk", "choi\n\n'


def stream_frames(answer: Answer) -> list[Frame]:
    """The SSE chunks of a streamed answer, ending with the usage chunk and ``[DONE]``."""
    base = {
        "id": answer.message_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": answer.model,
        "system_fingerprint": None,
    }
    if answer.include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: %s\n\n" % json.dumps(base | {"choices": [choice]}).encode()

    frames: list[Frame] = [(chunk({"role": "assistant", "content": "", "refusal": None}), False)]
    frames += [(chunk({"content": text}), True) for text in answer.text_chunks]
    for index, (call_id, name, arguments) in enumerate(answer.tool_calls):
        frames.append((chunk({"tool_calls": [_tool_call(index, call_id, name, "")]}), False))
        for piece in json_chunks(arguments):
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            frames.append((chunk(delta), True))
    frames.append((chunk({}, _FINISH_REASONS[answer.stop_reason]), False))
    if answer.include_usage:
        usage = base | {"choices": [], "usage": _usage(answer)}
        frames.append((b"data: %s\n\n" % json.dumps(usage).encode(), False))
    frames.append((b"data: [DONE]\n\n", False))
    if answer.malformed:
        first = next((i for i, (_, content) in enumerate(frames) if content), 1)
        frames.insert(first, (_MALFORMED, True))
    return frames
