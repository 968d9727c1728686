"""The Celery app, its task names, and the kick: how the API hands an agent to a worker.

A kick names the agent, not the turn: whichever worker takes the agent's
lease runs its head turn. Kicks are cheap and idempotent, so a duplicate or
a lost one is harmless: the sweeper re-kicks agents whose turns wait.

New work (a message, a decision that re-queues a turn) is kicked through
``KickSender.kick``, which sends at most one kick per agent while one is on
its way: a per-agent "kick pending" marker in Redis (``shared.keys.kick_pending``)
is set with ``SET NX`` before the task is published and deleted by the worker
that takes the kick, before its claim. Recovery (the sweeper, a worker
handing its turns back at shutdown) uses ``KickSender.rekick``, which always
publishes: it heals kicks that were lost, including one whose marker is left.
docs/workers.md ("Kick de-duplication") gives the argument for why no turn is
stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from shared.keys import celery_queue, kick_pending
from shared.settings import Settings

log = logging.getLogger(__name__)

KICK_TASK = "bobbin.kick"
# How long a marker can outlive its kick. A kick normally removes its marker within
# milliseconds of being published, or after waiting its turn in the queue (one kick per
# agent at most, so seconds); a marker whose kick was lost (a Redis restart that kept
# the key but not the message) would suppress the agent's new kicks, but the sweeper
# kicks such an agent within BOBBIN_SWEEP_INTERVAL_S (10 s) regardless of the marker,
# and its kick deletes the marker. 30 s (3 sweep intervals) is long enough that a kick
# waiting in a busy queue is seldom duplicated, and short enough to bound the damage
# when no sweeper runs and to let stale keys expire on their own.
KICK_PENDING_TTL_S = 30


def make_celery(settings: Settings) -> Celery:
    """Configured for work that must not be lost; docs/workers.md gives each reason."""
    app = Celery("bobbin", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_retry_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=celery_queue(),
        broker_transport_options={
            # Past this, Redis hands an unacked kick to another worker: keep it
            # above the longest turn so a running turn is not delivered twice.
            "visibility_timeout": int(settings.turn_timeout_s + 600),
            # A kick must fail fast when Redis is away: the turn is durable and
            # the sweeper kicks it later.
            "socket_connect_timeout": 1.0,
            "socket_timeout": 5.0,
        },
        broker_connection_timeout=1.0,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Off: each would be one more Redis publish per kick (task-sent from the sender,
        # task-received/started/succeeded from the worker). Flower turns the worker's
        # task events on at run time (its enable_events broadcast, every 5 s), so it
        # still shows kicks flowing; docs/workers.md.
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


class KickSender:
    """Sends kicks by task name: the Celery app that publishes them, and a Redis client
    (blocking, thread-safe) for the kick-pending markers. Hold one per process, or per
    Celery app; the methods that send block on IO, the ``async`` ones run them in a thread.

    The markers live in the broker's Redis (``broker_url``): a Redis that loses or keeps
    the queue's messages loses or keeps the markers with them.
    """

    def __init__(self, celery: Celery, client: redis.Redis | None = None) -> None:
        self.celery = celery
        self.redis = client if client is not None else _marker_client(celery)

    def send_kick(self, agent_id: str) -> bool:
        """Kick the agent for new work, unless a kick for it is already pending.

        Call it after the work's transaction committed. True when a kick is on its
        way (this one, or the pending one); False when the broker is unreachable
        (the turn is durable: the sweeper will kick).
        """
        marker = kick_pending(agent_id)
        try:
            if not self.redis.set(marker, 1, nx=True, ex=KICK_PENDING_TTL_S):
                # A kick is pending: its worker deletes the marker before it claims,
                # so that claim starts after our commit and sees the work.
                return True
            marked = True
        except RedisError as exc:
            log.debug("kick-pending marker for %s not set (%s); kicking anyway", agent_id, exc)
            marked = False  # cannot tell: send (a kick is cheap and idempotent)
        if self._publish(agent_id):
            return True
        if marked:
            with contextlib.suppress(RedisError):  # else it expires: the TTL bounds it
                self.redis.delete(marker)
        return False

    def send_rekick(self, agent_id: str) -> bool:
        """Kick the agent whatever its marker says: for recovery (sweeper, shutdown)."""
        return self._publish(agent_id)

    async def kick(self, agent_id: str) -> bool:
        """``send_kick`` off the event loop: Redis and kombu's publish are blocking IO."""
        return await asyncio.to_thread(self.send_kick, agent_id)

    async def rekick(self, agent_id: str) -> bool:
        """``send_rekick`` off the event loop."""
        return await asyncio.to_thread(self.send_rekick, agent_id)

    def _publish(self, agent_id: str) -> bool:
        try:
            self.celery.send_task(KICK_TASK, args=[agent_id], retry=False)
            return True
        except Exception as exc:  # kombu raises a variety of connection errors
            log.warning("kick for %s not sent (%s); the sweeper will kick it", agent_id, exc)
            return False

    def close(self, *, celery: bool = True) -> None:
        """Close the Redis client, and the Celery app unless ``celery=False`` (a worker's
        own app, which Celery closes)."""
        self.redis.close()
        if celery:
            self.celery.close()

    def __enter__(self) -> KickSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _marker_client(celery: Celery) -> redis.Redis:
    """A client on the broker's Redis that fails as fast as the kick's publish does."""
    return redis.Redis.from_url(
        str(celery.conf.broker_url),
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        # One immediate retry covers a pooled connection the server closed; more would
        # only delay a kick that is sent anyway when the SET fails.
        retry=Retry(NoBackoff(), 1),
    )
