"""One turn, watched live: send a message, stream the agent's events, answer approvals.

The stream is opened before the message is sent, so no event of the turn is
missed (a stream without ``Last-Event-ID`` carries everything published
after its headers). If the stream breaks, it reconnects with the last
durable cursor and misses no durable event; streamed text lost in the gap
is completed from the ``agent_message`` that holds the whole text.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from cli.api_client import ApiClient, ApiError
from cli.common import fail

DECISIONS = {"a": "allow_once", "s": "allow_session", "d": "deny"}
MAX_RECONNECTS = 5
STREAM_BREAKS = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)
PREVIEW_CHARS = 160

Decide = Callable[[dict[str, Any]], str]


@dataclass
class SseMessage:
    event: str
    data: str
    id: str | None


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Parse Server-Sent Events; comments (keep-alives) are skipped."""
    event, last_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseMessage(event, "\n".join(data), last_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value


@dataclass
class Printer:
    """Writes a turn as it streams: text inline, tool calls and results on short lines."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    streamed: str = ""  # text of the message being streamed
    _last: str = "\n"  # the last character written

    def text(self, piece: str) -> None:
        self.streamed += piece
        self._write(piece)

    def message(self, content: str) -> None:
        """The whole message: print what streaming has not shown yet."""
        if content.startswith(self.streamed):
            self._write(content[len(self.streamed) :])
        else:
            self._write(("\n" if self._last != "\n" else "") + content)
        self.end_line()

    def end_line(self) -> None:
        if self._last != "\n":
            self._write("\n")
        self.streamed = ""

    def note(self, line: str) -> None:
        self.end_line()
        self._write(line + "\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._last = text[-1]


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ask_decision(request: dict[str, Any]) -> str:
    """Ask on the terminal; deny without asking when stdin is not a terminal."""
    if not sys.stdin.isatty():
        print(f"  stdin is not a terminal: denying {request.get('tool')}", flush=True)
        return "deny"
    while True:
        answer = input("  [a]llow once / allow for [s]ession / [d]eny? ").strip().lower()
        if answer[:1] in DECISIONS:
            return DECISIONS[answer[:1]]


@dataclass
class TurnWatcher:
    """Follows one turn's events on an agent stream until the turn ends."""

    api: ApiClient
    agent_id: str
    printer: Printer
    decide: Decide = ask_decision
    turn_id: str | None = None
    cursor: str | None = None  # the last durable cursor seen, for Last-Event-ID
    exit_code: int | None = None

    def handle(self, envelope: dict[str, Any]) -> None:
        if envelope.get("turn_id") != self.turn_id:
            return  # an earlier turn of this agent, still running
        kind, data = envelope.get("type", ""), envelope.get("data") or {}
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data)

    def _on_agent_token(self, data: dict[str, Any]) -> None:
        self.printer.text(str(data.get("text", "")))

    def _on_agent_message(self, data: dict[str, Any]) -> None:
        self.printer.message(str(data.get("content", "")))

    def _on_local_system_message(self, data: dict[str, Any]) -> None:
        self.printer.note(f"  note: {data.get('content', '')}")

    def _on_tool_call(self, data: dict[str, Any]) -> None:
        self.printer.note(f"  → {data.get('tool')} {preview(data.get('arguments', {}))}")

    def _on_tool_result(self, data: dict[str, Any]) -> None:
        self.printer.note(f"  ← {data.get('status')}: {preview(data.get('content', ''))}")

    def _on_tool_approval_request(self, data: dict[str, Any]) -> None:
        args = preview(data.get("arguments", {}))
        self.printer.note(f"  ? {data.get('tool')} {args} needs your approval")
        decision = self.decide(data)
        call_id = data.get("tool_call_id")
        try:
            self.api.call(
                "POST", f"/v1/agents/{self.agent_id}/approvals/{call_id}", {"decision": decision}
            )
        except ApiError as exc:  # e.g. decided already, from the console or another chat
            self.printer.note(f"  (decision not recorded: {exc})")

    def _on_turn_completed(self, data: dict[str, Any]) -> None:
        self.printer.end_line()
        if usage := data.get("usage"):
            self.printer.note(usage_line(usage))
        self.exit_code = 0

    def _on_turn_failed(self, data: dict[str, Any]) -> None:
        self.printer.note(f"turn failed: {data.get('code')}: {data.get('message')}")
        self.exit_code = 1

    def _on_turn_cancelled(self, data: dict[str, Any]) -> None:
        self.printer.note(f"turn cancelled: {data.get('reason', 'cancelled')}")
        self.exit_code = 1


def usage_line(usage: dict[str, Any]) -> str:
    """``[1,200 tokens in, 340 out · $0.0087]`` (``estimated`` when the server sent none)."""
    cost = usage.get("cost_usd")
    spent = f" · ${cost}" if cost is not None else " · no price known"
    counted = " (estimated)" if usage.get("estimated") else ""
    tokens = f"{usage.get('input_tokens', 0):,} tokens in, {usage.get('output_tokens', 0):,} out"
    return f"[{tokens}{counted}{spent}]"


def converse(
    api: ApiClient,
    agent_id: str,
    message: str,
    *,
    printer: Printer | None = None,
    decide: Decide = ask_decision,
) -> int:
    """Send ``message`` to the agent and print its turn as it streams; 0 when it completes."""
    watcher = TurnWatcher(api, agent_id, printer or Printer(), decide)
    path = f"/v1/agents/{agent_id}/events/stream"
    for _attempt in range(MAX_RECONNECTS + 1):
        with api.stream(path, watcher.cursor) as response:
            if watcher.turn_id is None:
                turn = api.post(f"/v1/agents/{agent_id}/messages", {"content": message})
                watcher.turn_id = turn["turn"]["id"]
                watcher.cursor = watcher.cursor or "0"  # a reconnect replays from the start
            with contextlib.suppress(*STREAM_BREAKS):  # reconnect below, from the cursor
                _follow(response, watcher)
        if watcher.exit_code is not None:
            return watcher.exit_code
    fail(
        f"the event stream of agent {agent_id} kept breaking: "
        f"see the turn with GET /v1/turns/{watcher.turn_id}"
    )


def _follow(response: httpx.Response, watcher: TurnWatcher) -> None:
    """Hand events to ``watcher`` until its turn ends (or the stream does)."""
    for sse in sse_messages(response.iter_lines()):
        if sse.id:
            watcher.cursor = sse.id.split(".", 1)[0]  # resume after its durable part
        try:
            envelope = json.loads(sse.data)
        except ValueError:
            continue
        watcher.handle(envelope)
        if watcher.exit_code is not None:
            return
