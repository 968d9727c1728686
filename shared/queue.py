"""The Celery app, its task names, and the kick: how the API hands an agent to a worker.

A kick names the agent, not the turn: whichever worker takes the agent's
lease runs its head turn. Kicks are cheap and idempotent, so a duplicate or
a lost one is harmless: the sweeper re-kicks agents whose turns wait.
"""

from __future__ import annotations

import asyncio
import logging

from celery import Celery

from shared.config import Settings
from shared.keys import celery_queue

log = logging.getLogger(__name__)

KICK_TASK = "bobbin.kick"


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
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


def send_kick(app: Celery, agent_id: str) -> bool:
    """Publish a kick; False when the broker is unreachable (the sweeper will kick)."""
    try:
        app.send_task(KICK_TASK, args=[agent_id], retry=False)
        return True
    except Exception as exc:  # kombu raises a variety of connection errors
        log.warning("kick for %s not sent (%s); the sweeper will kick it", agent_id, exc)
        return False


async def kick(app: Celery, agent_id: str) -> bool:
    """Send the kick off the event loop: kombu's publish is blocking IO."""
    return await asyncio.to_thread(send_kick, app, agent_id)
