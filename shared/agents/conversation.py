"""Rebuild the model's conversation from a thread's events, and nothing else.

Because the conversation is a pure function of the events, any worker can
rebuild an agent at any turn and the model receives the identical request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.events import StoredEvent
from shared.llm import ChatMessage, ToolCallRequest
from shared.tool_calls import open_tool_calls

RESULT_TEXT = {
    "denied": "The user denied this tool call.",
    "aborted": "This tool call was aborted before it finished.",
}


@dataclass
class Conversation:
    system: str | None
    messages: list[ChatMessage]


def build_conversation(events: Sequence[StoredEvent]) -> Conversation:
    """The conversation of a thread's events.

    A call the thread holds without a result (written before every ending closed
    its calls) is answered as aborted right after its batch, as providers
    demand; the thread itself is left as it is.
    """
    system: str | None = None
    messages: list[ChatMessage] = []
    provider_ids: dict[str, str] = {}
    unanswered = {call["tool_call_id"] for call in open_tool_calls(events)}
    aborted: list[ChatMessage] = []  # answers for the current batch's unanswered calls
    for event in events:
        data = event.data
        if event.type == "system_prompt":
            system = data["content"]
        elif event.type in ("user_message", "agent_message"):
            messages += aborted
            aborted = []
            role = "user" if event.type == "user_message" else "assistant"
            _add_text(messages, role, data["content"])
        elif event.type == "tool_call":
            provider_ids[data["tool_call_id"]] = data["provider_call_id"]
            call = ToolCallRequest(
                id=data["provider_call_id"], name=data["tool"], arguments=data["arguments"]
            )
            if messages and messages[-1].role == "assistant":
                messages[-1].tool_calls.append(call)
            else:
                messages += aborted
                aborted = []
                messages.append(ChatMessage(role="assistant", tool_calls=[call]))
            if data["tool_call_id"] in unanswered:
                aborted.append(_result(call.id, "aborted", ""))
        elif event.type == "tool_result":
            status = data["status"]
            call_id = provider_ids.get(data["tool_call_id"], data["tool_call_id"])
            messages.append(_result(call_id, status, data.get("content") or ""))
    messages += aborted
    return Conversation(system=system, messages=messages)


def _result(call_id: str, status: str, content: str) -> ChatMessage:
    return ChatMessage(
        role="tool",
        content=content or RESULT_TEXT.get(status, ""),
        tool_call_id=call_id,
        is_error=status != "completed",
    )


def _add_text(messages: list[ChatMessage], role: str, text: str) -> None:
    """Merge consecutive texts of one role: providers want alternating turns."""
    last = messages[-1] if messages else None
    if last is not None and last.role == role and not last.tool_calls:
        last.content = f"{last.content}\n\n{text}" if last.content else text
        return
    messages.append(ChatMessage(role=role, content=text))
