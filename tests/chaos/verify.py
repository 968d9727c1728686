"""What the database says after faults: lost messages, duplicated events, gaps, stuck turns.

The database is the source of truth, so the audit reads it directly: every
accepted message must be a turn whose text entered its thread exactly once,
every durable event of a turn step must exist once, seqs and session_seqs must
be gapless, and every turn must have ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from shared.db import Database
from shared.models import ChatSession, Thread, ThreadEvent, Turn
from shared.status import OPEN

CLOSING = ("turn_completed", "turn_failed", "turn_cancelled")
_CLOSING_OF = {
    "completed": "turn_completed",
    "failed": "turn_failed",
    "cancelled": "turn_cancelled",
}


@dataclass
class Sent:
    """A message the client sent, and what the API answered."""

    key: str
    agent_id: str
    content: str
    turn_id: str | None = None  # set on 202
    status: int | None = None
    tries: int = 0


@dataclass
class Audit:
    turns: int = 0
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    stuck: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # message keys
    duplicated_events: int = 0
    duplicates: list[str] = field(default_factory=list)  # what was duplicated, for the log
    seq_gaps: int = 0
    session_seq_gaps: int = 0
    order_violations: int = 0
    closing_mismatches: int = 0
    recovered_turns: int = 0  # turns that needed more than one worker attempt
    events: int = 0

    def problems(self) -> dict[str, Any]:
        """Everything that must be zero, with its value."""
        return {
            "stuck turns": len(self.stuck),
            "lost messages": len(self.lost),
            "duplicated events": self.duplicated_events,
            "seq gaps": self.seq_gaps,
            "session_seq gaps": self.session_seq_gaps,
            "order violations": self.order_violations,
            "closing mismatches": self.closing_mismatches,
        }

    @property
    def ok(self) -> bool:
        return not any(self.problems().values())


def audit(db: Database, sent: list[Sent]) -> Audit:
    """Audit every accepted message of ``sent`` against the database."""
    return db.read_sync(_audit, [s for s in sent if s.turn_id is not None])


def _audit(session: Session, accepted: list[Sent]) -> Audit:
    result = Audit()
    turns = {t.id: t for t in session.exec(select(Turn))}
    events = list(session.exec(select(ThreadEvent).order_by(col(ThreadEvent.id))))
    result.events = len(events)
    by_turn: dict[str, list[ThreadEvent]] = defaultdict(list)
    for event in events:
        if event.turn_id is not None:
            by_turn[event.turn_id].append(event)
    for message in accepted:
        assert message.turn_id is not None
        turn = turns.get(message.turn_id)
        if turn is None or turn.input != message.content:
            result.lost.append(message.key)
            continue
        _audit_turn(result, message, turn, by_turn.get(turn.id, []))
    _audit_counters(session, result, events)
    _audit_order(result, turns, events)
    return result


def _audit_turn(result: Audit, message: Sent, turn: Turn, events: list[ThreadEvent]) -> None:
    result.turns += 1
    if turn.status in OPEN:
        result.stuck.append(turn.id)
    elif turn.status == "completed":
        result.completed += 1
    elif turn.status == "failed":
        result.failed[(turn.error or {}).get("code", "?")] += 1
    else:
        result.cancelled += 1
    result.recovered_turns += turn.attempt > 0
    types = Counter(e.type for e in events)
    users = [e for e in events if e.type == "user_message"]
    # A turn that failed before it began (its start could not be stored) has one event, its
    # turn_failed: the message did not enter the conversation, and the turn says so with a code.
    failed_unstarted = turn.status == "failed" and [e.type for e in events] == ["turn_failed"]
    entered = turn.started_at is not None or (bool(events) and not failed_unstarted)
    if entered and not any(e.data.get("content") == message.content for e in users):
        result.lost.append(message.key)
    closing = sum(types[t] for t in CLOSING)
    ended = turn.status in _CLOSING_OF and bool(events)
    if ended and (closing != 1 or types[_CLOSING_OF[turn.status]] != 1):
        result.closing_mismatches += 1
    once = {
        "user_message": types["user_message"],
        "turn_started": types["turn_started"],
        "closing event": closing,
        "final agent_message": sum(
            1 for e in events if e.type == "agent_message" and not e.data.get("partial")
        ),
    }
    calls = Counter(
        (e.data.get("round"), e.data.get("tool")) for e in events if e.type == "tool_call"
    )
    results = Counter(e.data.get("tool_call_id") for e in events if e.type == "tool_result")
    counts = [(what, n) for what, n in once.items()]
    counts += [(f"tool_call round {r} {tool}", n) for (r, tool), n in calls.items()]
    counts += [(f"tool_result {call}", n) for call, n in results.items()]
    for what, n in counts:
        if n > 1:
            result.duplicated_events += n - 1
            result.duplicates.append(f"{turn.id}: {what} x{n}")


def _audit_counters(session: Session, result: Audit, events: list[ThreadEvent]) -> None:
    """Seqs per thread and session_seqs per session are exactly 1..counter; one system prompt
    per thread."""
    seqs: dict[str, list[int]] = defaultdict(list)
    session_seqs: dict[str, list[int]] = defaultdict(list)
    prompts: Counter[str] = Counter()
    for event in events:
        seqs[event.thread_id].append(event.seq)
        session_seqs[event.session_id].append(event.session_seq)
        prompts[event.thread_id] += event.type == "system_prompt"
    for thread_id, n in prompts.items():
        if n > 1:  # once per thread, at its first turn
            result.duplicated_events += n - 1
            result.duplicates.append(f"{thread_id}: system_prompt x{n}")
    for thread in session.exec(select(Thread)):
        got = seqs.get(thread.id, [])
        result.seq_gaps += thread.seq - len(set(got))
        result.duplicated_events += len(got) - len(set(got))
    for chat in session.exec(select(ChatSession)):
        got = session_seqs.get(chat.id, [])
        result.session_seq_gaps += chat.session_seq - len(set(got))
        result.duplicated_events += len(got) - len(set(got))


def _audit_order(result: Audit, turns: dict[str, Turn], events: list[ThreadEvent]) -> None:
    """Each agent's user messages enter its thread in the order the API accepted them."""
    entered: dict[str, list[Turn]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.thread_id, e.seq)):
        if event.type == "user_message" and event.turn_id in turns:
            entered[event.thread_id].append(turns[event.turn_id])
    for started in entered.values():
        positions = [t.position for t in started]
        result.order_violations += sum(
            1 for a, b in zip(positions, positions[1:], strict=False) if b <= a
        )


def heads(db: Database) -> dict[str, int]:
    """Each session's last session_seq: where its stream must have got to."""
    return db.read_sync(lambda s: {c.id: c.session_seq for c in s.exec(select(ChatSession))})


def open_turns(db: Database, turn_ids: list[str]) -> int:
    """How many of ``turn_ids`` are not finished yet."""

    def count(session: Session) -> int:
        rows = session.exec(select(Turn.id, Turn.status))
        wanted = set(turn_ids)
        return sum(1 for turn_id, status in rows if turn_id in wanted and status in OPEN)

    return db.read_sync(count)
