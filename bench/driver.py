"""The driver's side of a benchmark: set-up through Bobbin's store, kicks, and a watch on events.

Single turns are watched on the session channels of Redis (what every API
process fans out), so the clock stops when the worker publishes
``turn_completed``, without a polling interval and without loading the API.
Batches are timed by the turns' own ``finished_at`` in the database
(``wait_finished``), since a publish is best effort and can be lost.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis
from celery import Celery
from sqlmodel import Session, col, select

from shared.keys import session_channel
from shared.models import Turn
from shared.queue import KickSender
from shared.resources import Resources
from shared.turns import enqueue_turn
from tests.fakellm import RemoteFakeLLM
from tests.helpers import add_agent, add_instance

_CLOSING = (b'{"type":"turn_completed"', b'{"type":"turn_failed"', b'{"type":"turn_cancelled"')
_STARTED = b'{"type":"turn_started"'
_TOKEN = b'{"type":"agent_token"'


@dataclass
class Agents:
    instance_id: str
    ids: list[str]

    @property
    def session_ids(self) -> list[str]:
        return [session_of(agent_id) for agent_id in self.ids]


def session_of(agent_id: str) -> str:
    return agent_id.rsplit(".", 1)[0]


async def make_agents(res: Resources, llm: RemoteFakeLLM, count: int) -> Agents:
    """``count`` agents on one Anthropic instance pointed at the fake, one session each."""
    instance = await add_instance(res, llm, "anthropic")  # type: ignore[arg-type]
    ids = [await add_agent(res, instance, "anthropic") for _ in range(count)]
    return Agents(instance, ids)


async def enqueue_many(
    res: Resources, messages: list[tuple[str, str]], batch: int = 200
) -> list[str]:
    """Store ``(agent_id, content)`` messages as queued turns, as the API's POST does."""
    turn_ids: list[str] = []
    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]

        def write(session: Session, chunk: list[tuple[str, str]] = chunk) -> list[str]:
            ids = []
            for agent_id, content in chunk:
                turn, _ = enqueue_turn(session, agent_id, content, max_queued=100_000)
                ids.append(turn.id)
            return ids

        turn_ids += await res.db.run(write)
    return turn_ids


@dataclass
class Finished:
    last_finished_at: float  # time.time() of the last turn's finished_at
    statuses: dict[str, int]
    # worker_id -> (turns it finished, time.time() of its last finished_at)
    by_worker: dict[str, tuple[int, float]]
    last_started_at: float  # time.time() of the last turn's (last attempt's) start


def _turn_states(
    session: Session, turn_ids: list[str]
) -> list[tuple[str, datetime | None, str | None, datetime | None]]:
    rows = session.exec(
        select(Turn.status, Turn.finished_at, Turn.worker_id, Turn.started_at).where(
            col(Turn.id).in_(turn_ids)
        )
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:  # SQLite hands back naive UTC datetimes
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


async def wait_finished(
    res: Resources, turn_ids: list[str], timeout_s: float = 300, poll_s: float = 0.1
) -> Finished:
    """Poll the database until every turn has finished; the authoritative clock of a run.

    Live events are best effort (a publish can fail), the turn row is not: a
    benchmark times a batch by the last ``finished_at`` its workers recorded.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        states = await res.db.read(_turn_states, turn_ids)
        open_ = [s for s, _, _, _ in states if s in ("queued", "running")]
        if not open_ and len(states) == len(turn_ids):
            statuses: dict[str, int] = {}
            by_worker: dict[str, tuple[int, float]] = {}
            for status, finished, worker, _ in states:
                statuses[status] = statuses.get(status, 0) + 1
                if finished is not None:
                    count, last_at = by_worker.get(worker or "", (0, 0.0))
                    by_worker[worker or ""] = (count + 1, max(last_at, _epoch(finished)))
            last = max(at for _, at in by_worker.values())
            started = max((_epoch(at) for _, _, _, at in states if at is not None), default=0.0)
            return Finished(last, statuses, by_worker, started)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(open_)} of {len(turn_ids)} turns still open")
        await asyncio.sleep(poll_s)


_SENDERS: dict[int, KickSender] = {}
_SENDERS_LOCK = threading.Lock()


def kick_sender(app: Celery) -> KickSender:
    """The one KickSender (and Redis client) for ``app``, as an API process holds one."""
    with _SENDERS_LOCK:
        sender = _SENDERS.get(id(app))
        if sender is None:  # (the sender keeps ``app`` alive: its id is not reused)
            sender = _SENDERS[id(app)] = KickSender(app)
        return sender


def send_kicks(app: Celery, agent_ids: Iterable[str]) -> None:
    """Kick the agent of each item, as the API does after each message: a kick is
    published only when none is pending for the agent (``KickSender.send_kick``)."""
    sender = kick_sender(app)
    for agent_id in agent_ids:
        if not sender.send_kick(agent_id):
            raise RuntimeError("kick not sent: is Redis up?")


@dataclass
class TurnTimes:
    started: float | None = None
    first_token: float | None = None
    closed: float | None = None
    closing_type: str | None = None


@dataclass
class TurnWatcher:
    """Times each turn's ``turn_started``, first ``agent_token`` and closing event on Redis."""

    redis_url: str
    session_ids: list[str]
    turns: dict[str, TurnTimes] = field(default_factory=dict)
    closed: int = 0
    failed: list[str] = field(default_factory=list)
    last_closed_at: float = 0.0

    async def __aenter__(self) -> TurnWatcher:
        self._redis = aioredis.Redis.from_url(self.redis_url)
        self._pubsub = self._redis.pubsub()
        channels = sorted({session_channel(s) for s in self.session_ids})
        await self._pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            message = await self._pubsub.get_message(timeout=5.0)
            if message is None:
                raise TimeoutError("Redis did not confirm the subscriptions")
            confirmed += message["type"] == "subscribe"
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._pubsub.aclose()
        await self._redis.aclose()

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            now = time.perf_counter()
            data: bytes = message["data"]
            if data.startswith(_TOKEN):
                times = self._times(data)
                if times.first_token is None:
                    times.first_token = now
            elif data.startswith(_STARTED):
                self._times(data).started = now
            elif data.startswith(_CLOSING):
                times = self._times(data)
                times.closed, times.closing_type = now, json.loads(data)["type"]
                self.closed += 1
                self.last_closed_at = now
                if times.closing_type != "turn_completed":
                    self.failed.append(json.loads(data)["turn_id"])
                self._changed.set()

    def _times(self, data: bytes) -> TurnTimes:
        turn_id = json.loads(data)["turn_id"]
        return self.turns.setdefault(turn_id, TurnTimes())

    async def wait_closed(self, turn_id: str, timeout_s: float = 60) -> TurnTimes:
        async with asyncio.timeout(timeout_s):
            while True:
                self._changed.clear()
                times = self.turns.get(turn_id)
                if times is not None and times.closed is not None:
                    return times
                await self._changed.wait()

    async def wait_count(self, count: int, timeout_s: float = 300) -> float:
        """Wait until ``count`` turns closed; returns when the last one did."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._changed.clear()
                if self.closed >= count:
                    break
                await self._changed.wait()
        return self.last_closed_at
