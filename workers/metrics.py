"""A worker's Prometheus metrics, served over HTTP on ``BOBBIN_WORKER_METRICS_PORT``.

The port is off by default (several workers may share a host); compose sets
9808, one per container. What is measured, and where:

- turn runs by the status they left the turn in, their running time and the
  wait in the queue before a turn's first start (``workers/runner.py``);
- per model call, through the providers this worker's registry makes
  (``workers.instrumentation``): time to the first streamed token, tokens in
  and out by provider and model, and provider errors by code (each failed
  attempt, retried or not, and creation failures such as a missing credential);
- turns in flight, the event loop's lag and a heartbeat the container's health
  check reads (``python -m workers.health``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from shared.status import FINISHED

log = logging.getLogger(__name__)
disable_created_metrics()

PORT_ENV = "BOBBIN_WORKER_METRICS_PORT"
HEARTBEAT_S = 1.0
TURN_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
TTFT_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60)


class WorkerMetrics:
    """One worker process's metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turns = Counter(
            "bobbin_turns",
            "Turn runs ended on this worker, by the status they left the turn in "
            "(completed, failed, cancelled, awaiting_approval, queued, lease_lost).",
            ["status"],
            registry=r,
        )
        self.turn_duration = Histogram(
            "bobbin_turn_duration_seconds",
            "Running time of finished turns (approval waits not counted), by final status.",
            ["status"],
            buckets=TURN_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "bobbin_turn_queue_wait_seconds",
            "Time from a message's acceptance to its turn's first start.",
            buckets=WAIT_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "bobbin_time_to_first_token_seconds",
            "Time from a model request to its first streamed text or tool call.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "bobbin_tokens",
            "Tokens the providers reported, by provider, model and direction (input, output).",
            ["provider", "model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "bobbin_cost_usd",
            "What model calls cost at their models' prices (as the servers reported the "
            "tokens), by provider and model.",
            ["provider", "model"],
            registry=r,
        )
        self.throttled = Counter(
            "bobbin_provider_throttled",
            "Model calls the provider refused with 429, 503 or 529 (asking to slow down).",
            ["provider", "model"],
            registry=r,
        )
        self.provider_errors = Counter(
            "bobbin_provider_errors",
            "Provider errors by provider and code, each failed attempt counted.",
            ["provider", "code"],
            registry=r,
        )
        self.active_turns = Gauge(
            "bobbin_worker_active_turns", "Turns running in this worker now.", registry=r
        )
        self.loop_lag = Gauge(
            "bobbin_worker_event_loop_lag_seconds",
            "How late the event loop woke a 1 s timer, last measured.",
            registry=r,
        )
        self.heartbeat = Gauge(
            "bobbin_worker_heartbeat_timestamp_seconds",
            "Unix time the event loop last ran the heartbeat (health checks read it).",
            registry=r,
        )

    def track_active(self, count: Callable[[], int]) -> None:
        self.active_turns.set_function(count)

    # -- turns (workers/runner.py) ---------------------------------------------------

    def turn_ran(self, status: str, running_s: float | None) -> None:
        """Count a turn run; time it when it finished the turn (``running_s`` None: unknown)."""
        self.turns.labels(status).inc()
        if running_s is not None and status in FINISHED:
            self.turn_duration.labels(status).observe(running_s)

    def turn_first_started(self, created_at: datetime) -> None:
        if created_at.tzinfo is None:  # stored in UTC; SQLite hands it back naive
            created_at = created_at.replace(tzinfo=UTC)
        self.queue_wait.observe(max(0.0, (datetime.now(UTC) - created_at).total_seconds()))

    # -- model calls (workers.instrumentation) ---------------------------------------

    def provider_error(self, provider: str, code: str) -> None:
        self.provider_errors.labels(provider, code).inc()

    # -- the event loop --------------------------------------------------------------

    async def watch_loop(self, interval_s: float = HEARTBEAT_S) -> None:
        """Measure the loop's lag and beat the heartbeat until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self.heartbeat.set(time.time())
            before = loop.time()
            await asyncio.sleep(interval_s)
            self.loop_lag.set(max(0.0, loop.time() - before - interval_s))

    # -- serving ---------------------------------------------------------------------

    def serve(self, port: int, addr: str = "0.0.0.0") -> Callable[[], None] | None:
        """Serve ``/metrics`` on ``port`` from a thread; returns the stop function.

        A port already taken is logged, not fatal: the worker runs unmeasured.
        """
        try:
            server, thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            log.warning("worker metrics not served: port %d: %s", port, exc.strerror or exc)
            return None
        log.info("worker metrics on http://%s:%d/metrics", addr, port)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop


def port_from_env() -> int | None:
    """``BOBBIN_WORKER_METRICS_PORT``; None when unset, empty or 0 (off)."""
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return None
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV} must be a port number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{PORT_ENV} must be a port number, not {value!r}")
    return port or None
