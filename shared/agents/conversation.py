"""Rebuild the model's conversation from a thread's events, and nothing else.

Because the conversation is a pure function of the events, any worker can
rebuild an agent at any turn and the model receives the identical request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.events import StoredEvent
from shared.providers.base import ChatMessage, ToolCallRequest

RESULT_TEXT = {
    "denied": "The user denied this tool call.",
    "aborted": "This tool call was aborted before it finished.",
}


@dataclass
class Conversation:
    system: str | None
    messages: list[ChatMessage]


def build_conversation(events: Iterable[StoredEvent]) -> Conversation:
    system: str | None = None
    messages: list[ChatMessage] = []
    provider_ids: dict[str, str] = {}
    for event in events:
        data = event.data
        if event.type == "system_prompt":
            system = data["content"]
        elif event.type == "user_message":
            _add_text(messages, "user", data["content"])
        elif event.type == "agent_message":
            _add_text(messages, "assistant", data["content"])
        elif event.type == "tool_call":
            provider_ids[data["tool_call_id"]] = data["provider_call_id"]
            call = ToolCallRequest(
                id=data["provider_call_id"], name=data["tool"], arguments=data["arguments"]
            )
            if messages and messages[-1].role == "assistant":
                messages[-1].tool_calls.append(call)
            else:
                messages.append(ChatMessage(role="assistant", tool_calls=[call]))
        elif event.type == "tool_result":
            status = data["status"]
            content = data.get("content") or RESULT_TEXT.get(status, "")
            messages.append(
                ChatMessage(
                    role="tool",
                    content=content,
                    tool_call_id=provider_ids.get(data["tool_call_id"], data["tool_call_id"]),
                    is_error=status != "completed",
                )
            )
    return Conversation(system=system, messages=messages)


def _add_text(messages: list[ChatMessage], role: str, text: str) -> None:
    """Merge consecutive texts of one role: providers want alternating turns."""
    last = messages[-1] if messages else None
    if last is not None and last.role == role and not last.tool_calls:
        last.content = f"{last.content}\n\n{text}" if last.content else text
        return
    messages.append(ChatMessage(role=role, content=text))
