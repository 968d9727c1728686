"""The worker's broker transport: kombu's Redis transport, made to survive Redis restarts.

When Redis goes away while kicks are unacked, Celery closes the consumer's
connection and reconnects, but kombu then touches the transport it has torn
down twice: closing the channel again restores the unacked messages through
it, and a task that finishes later acks its message through it. Both raise
AttributeError, which is not a connection error, so the worker exits with
"Unrecoverable error" instead of reconnecting. Here the restore is skipped
(the sweeper re-kicks from the database whatever a lost kick carried, and a
kick delivered twice is harmless) and an ack on a closed connection is the
connection error it really is, which kombu logs and moves past.
"""

from __future__ import annotations

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class QoS(redis.QoS):
    restore_at_shutdown = False

    def ack(self, delivery_tag: str) -> None:
        self._require_open()
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._require_open()
        super().reject(delivery_tag, requeue=requeue)

    def _require_open(self) -> None:
        transport = self.channel.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("the broker connection that delivered this kick is closed")


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
