"""How a turn ends: what its closing transaction appends and records, in one place.

Every way a turn ends (completed, failed with any code, cancelled, a lost
worker's last attempt, a crash) is an ``Ending``, committed by
``ThreadWriter.end_turn`` in one transaction: the text to keep, an
``aborted`` result for each call still open (``shared.tool_calls``), the one
closing event, and the turn row. A turn whose cancel was accepted (the
``cancel_requested`` flag, set under the turn's row lock) ends ``cancelled``
whatever ending its holder had in mind: ``as_cancelled`` swaps the closing
event one for one, so the transaction's seqs stay as allocated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import BobbinError
from shared.events import NewEvent, StoredEvent
from shared.models import utcnow
from shared.pricing import shown_usage
from shared.status import TurnStatus
from shared.tool_calls import aborted_result, open_tool_calls

CANCELLED_BY_USER = "cancelled by the user"


@dataclass(frozen=True)
class Ending:
    status: TurnStatus  # completed, failed or cancelled
    text: str = ""  # the answer to keep as the turn's last agent_message
    partial: bool = False  # the text was cut short
    error: dict[str, Any] | None = None  # failed: code, message, retryable
    usage: dict[str, int] | None = None
    running_s: float | None = None
    attempt: int | None = None
    provider_attempts: int | None = None  # the throttled attempts left on the row, when changed

    @classmethod
    def completed(cls, text: str, usage: dict[str, int], running_s: float) -> Ending:
        return cls(TurnStatus.COMPLETED, text=text, usage=usage, running_s=running_s)

    @classmethod
    def failed(
        cls,
        error: BobbinError,
        *,
        streamed: str = "",
        usage: dict[str, int] | None = None,
        running_s: float | None = None,
        attempt: int | None = None,
    ) -> Ending:
        return cls(
            TurnStatus.FAILED,
            text=streamed,
            partial=bool(streamed),
            error=error.to_dict(),
            usage=usage,
            running_s=running_s,
            attempt=attempt,
        )

    @classmethod
    def cancelled(
        cls,
        *,
        streamed: str = "",
        usage: dict[str, int] | None = None,
        running_s: float | None = None,
    ) -> Ending:
        return cls(
            TurnStatus.CANCELLED,
            text=streamed,
            partial=bool(streamed),
            usage=usage,
            running_s=running_s,
        )

    def as_cancelled(self) -> Ending:
        """This ending, for a turn whose cancel was accepted first: the text is kept."""
        return replace(self, status=TurnStatus.CANCELLED, error=None)

    def events(self, turn_events: Sequence[StoredEvent]) -> list[NewEvent]:
        """What the closing transaction appends; ``turn_events`` are the turn's events so far
        (none for a turn that failed before it started: it gets its closing event alone)."""
        events: list[NewEvent] = []
        if self.text:
            message = {"partial": True} if self.partial else {}
            events.append(NewEvent.of("agent_message", content=self.text, **message))
        why = self._why_aborted()
        events += [aborted_result(c["tool_call_id"], why) for c in open_tool_calls(turn_events)]
        events.append(self._closing_event())
        return events

    def turn_changes(self, turn_events: Sequence[StoredEvent]) -> dict[str, Any]:
        """The turn row's new fields; ``output`` is the turn's last agent_message."""
        texts = [e.data["content"] for e in turn_events if e.type == "agent_message"]
        changes: dict[str, Any] = {
            "status": self.status,
            "finished_at": utcnow(),
            "output": self.text or (texts[-1] if texts else None),
        }
        optional = {"error": self.error, "usage": self.usage, "running_s": self.running_s}
        optional |= {"attempt": self.attempt, "provider_attempts": self.provider_attempts}
        changes |= {k: v for k, v in optional.items() if v is not None}
        return changes

    def _closing_event(self) -> NewEvent:
        if self.status == TurnStatus.COMPLETED:
            usage = shown_usage(self.usage) if self.usage is not None else None
            return NewEvent.of("turn_completed", usage=usage)
        if self.status == TurnStatus.FAILED:
            assert self.error is not None
            return NewEvent.of("turn_failed", **self.error)
        return NewEvent.of("turn_cancelled", reason=CANCELLED_BY_USER)

    def _why_aborted(self) -> str:
        if self.status == TurnStatus.FAILED and self.error is not None:
            return f"The turn failed ({self.error['code']}) before this call finished."
        return f"The turn was {self.status} before this call finished."
