"""``bobbin serve`` (the API) and ``bobbin worker`` (one Celery worker process)."""

from __future__ import annotations

import socket

import typer
import uvicorn

from cli.common import (
    bind_socket,
    check_redis,
    database,
    fail,
    is_loopback,
    load_settings,
    one_line_errors,
)
from shared.apikeys import count_active
from shared.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@one_line_errors
def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Run without API keys (loopback only)."),
) -> None:
    """Run the HTTP API."""
    settings = load_settings()
    loopback = is_loopback(host)
    if no_auth and not loopback:
        fail(f"--no-auth is allowed only on a loopback address, not {host}")
    check_startup(settings, loopback=loopback)
    sock = bind_socket(host, port)
    run_api(settings, sock, auth=not no_auth, loopback=loopback)


def check_startup(settings: Settings, *, loopback: bool) -> None:
    """Migrate, check the secret key and Redis, and (off loopback) that a key can get in."""
    with database(settings, loopback=loopback) as (db, _):
        active = db.read_sync(count_active)
    bootstrap = settings.bootstrap_api_key and settings.bootstrap_api_key.get_secret_value()
    if not loopback and active == 0 and not bootstrap:
        fail(
            "no API key exists, so nobody could use this server: create one with "
            "`bobbin keys create --name NAME` or set BOBBIN_BOOTSTRAP_API_KEY"
        )
    check_redis(settings)


def run_api(
    settings: Settings,
    sock: socket.socket,
    *,
    auth: bool = True,
    loopback: bool = True,
    log_level: str = "info",
) -> None:
    """Serve ``create_app`` on an already bound socket until SIGINT/SIGTERM.

    Fails when the app's startup fails (uvicorn has logged why).
    """
    from api.app import HTTP_IMPLEMENTATION, create_app

    app = create_app(settings, auth=auth, loopback=loopback)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level == "info",
        timeout_graceful_shutdown=5,
        lifespan="on",
        http=HTTP_IMPLEMENTATION,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        fail("the API did not start: see the log above")


@one_line_errors
def worker(
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        min=1,
        help="Turns in flight in this process (default: BOBBIN_WORKER_CONCURRENCY, 100).",
    ),
) -> None:
    """Run one worker process: it takes queued turns and runs them."""
    from workers.app import run_worker

    settings = load_settings()
    with database(settings, loopback=True):
        pass
    check_redis(settings)
    run_worker(settings, concurrency or settings.worker_concurrency)
