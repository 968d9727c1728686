"""Which tool calls are still open: derived here, once, from events.

A call is open from its ``tool_call`` event until its ``tool_result``. The
agent settles open calls before each model round; every way a turn ends
closes the ones left with an ``aborted`` result (``shared.endings``); and the
conversation rebuild answers any call a thread still holds open (threads
written before that rule), because a provider refuses a conversation with a
call that has no result, and would refuse every later turn of the agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.events import NewEvent, StoredEvent


def open_tool_calls(events: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    """The ``data`` of each ``tool_call`` in ``events`` without a ``tool_result``, in order."""
    answered = {e.data["tool_call_id"] for e in events if e.type == "tool_result"}
    return [
        e.data for e in events if e.type == "tool_call" and e.data["tool_call_id"] not in answered
    ]


def aborted_result(tool_call_id: str, why: str) -> NewEvent:
    """The result that closes a call which will never run (or never finish)."""
    return NewEvent.of("tool_result", tool_call_id=tool_call_id, status="aborted", content=why)
