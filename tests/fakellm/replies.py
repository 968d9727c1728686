"""What the fake answers: scripted ``Reply`` objects, their FIFO queue, and the default reply."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

ToolCallSpec = tuple[str, dict[str, Any] | str]


@dataclass
class Reply:
    """One scripted answer of the fake model.

    ``text`` is streamed in chunks (one per word). ``tool_calls`` are
    ``(name, arguments)`` pairs; arguments given as a ``str`` are sent verbatim
    (to script malformed JSON). ``error_status`` answers an error instead, with
    ``error_body`` (default: the provider's own error shape) and
    ``error_headers`` (e.g. ``{"retry-after": "2"}``); ``echo_headers`` puts the
    request's headers in the error message, as some misbehaving proxies do.
    ``latency_s`` delays the response headers, ``token_delay_s`` separates
    streamed chunks (both default to the server's config).
    ``cut_after_chunks=n`` closes the connection after n content chunks (0:
    after the preamble). ``no_stop`` ends the stream cleanly right after its
    content, without the stop events (message_delta/message_stop; the finish
    chunk, usage and ``[DONE]``). ``hang`` never answers. ``malformed`` sends
    invalid JSON where the first content chunk belongs. ``stop_reason`` overrides the
    stop reason (``max_tokens`` becomes OpenAI's ``length``).
    ``input_tokens``/``output_tokens`` override the reported usage;
    ``omit_usage`` leaves the OpenAI usage chunk out even when it was asked for.
    """

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    error_status: int | None = None
    error_body: dict[str, Any] | str | None = None
    error_headers: dict[str, str] = field(default_factory=dict)
    echo_headers: bool = False
    latency_s: float | None = None
    token_delay_s: float | None = None
    cut_after_chunks: int | None = None
    no_stop: bool = False
    hang: bool = False
    malformed: bool = False
    stop_reason: Literal["end_turn", "tool_use", "max_tokens"] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    omit_usage: bool = False  # as llama.cpp's server: no usage chunk whatever was asked

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        data = dict(data)
        data["tool_calls"] = [(name, args) for name, args in data.get("tool_calls", [])]
        return cls(**data)


def text_chunks(text: str) -> list[str]:
    """Split text into word chunks that join back to exactly ``text``."""
    return [chunk for chunk in re.split(r"(?<=\s)(?=\S)", text) if chunk]


def json_chunks(payload: str) -> list[str]:
    """Split a JSON document in two pieces, as models stream tool arguments."""
    middle = len(payload) // 2
    return [piece for piece in (payload[:middle], payload[middle:]) if piece]


@dataclass
class _Script:
    reply: Reply
    match: str | None
    times: int | None


class ScriptQueue:
    """Scripted replies, consumed FIFO by the first request each one matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[_Script] = []

    def push(self, reply: Reply, match: str | None = None, times: int | None = 1) -> None:
        """Queue ``reply`` for ``times`` requests (None: every matching request until reset)."""
        with self._lock:
            self._scripts.append(_Script(reply, match, times))

    def take(self, last_user_text: str) -> Reply | None:
        with self._lock:
            for index, script in enumerate(self._scripts):
                if script.match is None or script.match in last_user_text:
                    if script.times is not None:
                        script.times -= 1
                        if script.times <= 0:
                            del self._scripts[index]
                    return script.reply
        return None

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._scripts)


def default_reply(last_user_text: str, tool_result: str | None) -> Reply:
    """Without a script: answer a tool result with ``done: ...``, anything else with an echo."""
    if tool_result is not None:
        return Reply(text=f"done: {tool_result[:200]}")
    return Reply(text=f"echo: {last_user_text}")


def content_text(content: Any) -> str | None:
    """The text of a message content: a string or a list of text parts (None if none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "\n".join(texts) if texts else None
    return None


@dataclass
class Answer:
    """A reply made concrete for one request: ids, chunks, stop reason and usage."""

    model: str
    message_id: str
    text_chunks: list[str]
    tool_calls: list[tuple[str, str, str]]  # (call id, name, JSON arguments)
    stop_reason: Literal["end_turn", "tool_use", "max_tokens"]
    input_tokens: int
    output_tokens: int
    malformed: bool
    include_usage: bool = True


def make_answer(
    reply: Reply, *, model: str, serial: int, id_prefix: str, call_prefix: str, body_size: int
) -> Answer:
    calls = [
        (
            f"{call_prefix}{serial:06d}_{index}",
            name,
            args if isinstance(args, str) else json.dumps(args, separators=(",", ":")),
        )
        for index, (name, args) in enumerate(reply.tool_calls)
    ]
    chunks = text_chunks(reply.text)
    stop = reply.stop_reason or ("tool_use" if calls else "end_turn")
    output = reply.output_tokens
    if output is None:
        output = max(1, len(reply.text) // 4 + sum(len(c[2]) // 4 + 1 for c in calls))
    return Answer(
        model=model,
        message_id=f"{id_prefix}{serial:06d}",
        text_chunks=chunks,
        tool_calls=calls,
        stop_reason=stop,
        input_tokens=reply.input_tokens
        if reply.input_tokens is not None
        else max(1, body_size // 4),
        output_tokens=output,
        malformed=reply.malformed,
    )
