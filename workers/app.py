"""The Celery worker: the kick task and the signals that run the process's event loop."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_shutdown, worker_shutting_down

from shared.logging import configure_logging, json_logs_from_env
from shared.queue import KICK_TASK, make_celery
from shared.settings import Settings
from workers.broker import TRANSPORT
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings, concurrency: int) -> tuple[Celery, WorkerRuntime]:
    app = make_celery(settings)
    app.conf.broker_transport = TRANSPORT  # survives Redis restarts (workers/broker.py)
    runtime = WorkerRuntime(settings, app, concurrency)

    @app.task(name=KICK_TASK, ignore_result=True)
    def kick_task(agent_id: str) -> None:
        # Late ack: the broker forgets the kick only after the turn's outcome is recorded.
        runtime.run_kick(agent_id)

    def _on_init(**_: Any) -> None:
        runtime.start()

    def _on_shutting_down(**_: Any) -> None:
        runtime.begin_shutdown()

    def _on_shutdown(**_: Any) -> None:
        runtime.stop()

    # weak=False: the handlers are closures that nothing else keeps alive.
    worker_init.connect(_on_init, weak=False)
    worker_shutting_down.connect(_on_shutting_down, weak=False)
    worker_shutdown.connect(_on_shutdown, weak=False)
    return app, runtime


def run_worker(settings: Settings, concurrency: int, loglevel: str = "INFO") -> None:
    """Run one worker process: Celery's threads pool, one event loop, N turns in flight.

    Logs are human text, or JSON lines with ``BOBBIN_LOG_FORMAT=json`` (then
    without Celery's start-up banner, so every line of stdout is JSON).
    """
    json_logs = bool(json_logs_from_env())
    configure_logging(json=json_logs, level=loglevel)
    # A receiver of setup_logging tells Celery to leave the handlers above alone.
    setup_logging.connect(_keep_our_logging, weak=False)
    app, _ = create_worker_app(settings, concurrency)
    app.worker_main(
        [
            *(["--quiet"] if json_logs else []),
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            app.conf.task_default_queue,
            "-n",
            f"bobbin-{os.getpid()}@%h",
        ]
    )


def _keep_our_logging(**_: Any) -> None:
    return None


if __name__ == "__main__":
    from shared.settings import get_settings

    run_worker(get_settings(), int(os.environ.get("BOBBIN_WORKER_CONCURRENCY", "100")))
