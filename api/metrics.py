"""The API process's Prometheus metrics (names start with ``bobbin_``), on its own registry.

Requests and open event streams are this process's own. The queue gauges
come from the database and the broker, which every replica sees alike: they
are refreshed in the background (``refresh_forever``) so a scrape never waits
on either, and with N replicas each reports the same values (aggregate them
with ``max``). Worker-side metrics (turn outcomes, durations, time to first
token, provider errors, tokens) are in ``workers/metrics.py`` and ``workers/instrumentation.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import func
from sqlmodel import Session, col, select

from shared.keys import celery_queue
from shared.models import Turn
from shared.resources import Resources
from shared.status import IN_PROGRESS, OPEN, TurnStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REFRESH_S = 5.0
WAITING_REASONS = ("provider_cooldown", "rate_limit", "budget_reserved")

log = logging.getLogger(__name__)
disable_created_metrics()  # no _created series beside each counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "bobbin_api_requests",
            "HTTP requests answered, by method and status.",
            ["method", "status"],
            registry=self.registry,
        )
        self._streams = Gauge(
            "bobbin_api_event_streams",
            "Event streams (SSE) open on this API process.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "bobbin_queue_depth",
            "Turns waiting to run (status queued), from the database.",
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "bobbin_turns_in_progress",
            "Turns running or awaiting approval, from the database.",
            ["status"],
            registry=self.registry,
        )
        self.broker_queue = Gauge(
            "bobbin_broker_queue_length",
            "Kick messages waiting in the broker's queue.",
            ["queue"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "bobbin_turns_waiting",
            "Queued turns waiting without a worker slot, by reason (provider_cooldown, "
            "rate_limit, budget_reserved), from the database.",
            ["reason"],
            registry=self.registry,
        )
        self.cooldowns = Gauge(
            "bobbin_provider_cooldowns",
            "Provider instance and model pairs in a cooldown their provider asked for.",
            registry=self.registry,
        )

    def count_request(self, method: str, status: int) -> None:
        self._requests.labels(method, str(status)).inc()

    def track_streams(self, count: Callable[[], float]) -> None:
        """Report ``count()`` as the open event streams at each scrape."""
        self._streams.set_function(count)

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    async def refresh(self, resources: Resources) -> None:
        """Read the queue figures from the database and the broker once."""
        counts = await resources.db.read(_open_turn_counts)
        self.queue_depth.set(counts.get(TurnStatus.QUEUED, 0))
        for status in sorted(IN_PROGRESS):
            self.in_progress.labels(status).set(counts.get(status, 0))
        waiting = await resources.db.read(_waiting_counts)
        for reason in WAITING_REASONS:
            self.waiting.labels(reason).set(waiting.get(reason, 0))
        self.cooldowns.set(await resources.flow.throttle.cooldown_count())
        queue = celery_queue()
        self.broker_queue.labels(queue).set(await resources.redis.llen(queue))

    async def refresh_forever(
        self, resources: Resources, stop: asyncio.Event, interval_s: float = REFRESH_S
    ) -> None:
        """Refresh every ``interval_s`` until ``stop`` is set.

        Ended by the event rather than by cancelling: a cancel can land while a
        Redis command is in flight (leaving its connection half closed), and on
        3.11 ``wait_for`` can swallow a cancel that lands as the refresh
        finishes, so the task would never end.
        """
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval_s):  # a hung database or Redis
                    await self.refresh(resources)
            except Exception as exc:  # the database or Redis is away: keep the last figures
                log.debug("metrics refresh failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()


def _waiting_counts(session: Session) -> dict[str, int]:
    rows = session.exec(
        select(Turn.waiting).where(
            Turn.status == TurnStatus.QUEUED,
            col(Turn.not_before).is_not(None),
        )
    ).all()
    reasons = [w.get("reason") for w in rows if w]
    return {reason: reasons.count(reason) for reason in set(reasons) if reason}


def _open_turn_counts(session: Session) -> dict[str, int]:
    rows = session.exec(
        select(Turn.status, func.count())
        .where(Turn.status.in_(sorted(OPEN)))  # type: ignore[attr-defined]
        .group_by(Turn.status)
    ).all()
    return {status: int(count) for status, count in rows}
