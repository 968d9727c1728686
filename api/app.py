"""The app factory: ``create_app(settings)`` builds the API; its lifespan owns the resources.

The lifespan opens the process's Resources (database, Redis, HTTP pool,
registry), one EventHub (one Redis subscriber for every stream of this
process) and a Celery app used only to send kicks by task name.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api.auth import require_api_key, store_bootstrap_key
from api.errors import install_error_handlers
from api.metrics import Metrics
from api.middleware import MAX_BODY_BYTES, BodyLimitMiddleware, MetricsMiddleware
from api.routes import agents, approvals, events, health, projects, providers, sessions, turns
from api.schemas import ErrorOut
from api.state import ApiState, Kicker
from shared.bus import EventHub
from shared.logging import configure_logging, json_logs_from_env
from shared.queue import make_celery
from shared.resources import Resources, open_resources
from shared.settings import Settings, get_settings

ResourcesFactory = Callable[[Settings], Awaitable[Resources]]
KEEPALIVE_S = 15.0
# uvicorn's HTTP implementation. Not httptools: uvicorn's httptools protocol answers an
# HTTP/1.0 request (curl -0, nginx's default upstream version) with chunked framing,
# which such a client cannot read; h11 ends a 1.0 stream by closing the connection.
HTTP_IMPLEMENTATION = "h11"
STATIC_DIR = Path(__file__).resolve().parent / "static"  # the web console


def _error(description: str, code: str, message: str) -> dict[str, object]:
    example = {"error": {"code": code, "message": message}}
    return {
        "model": ErrorOut,
        "description": description,
        "content": {"application/json": {"example": example}},
    }


# The answers any /v1 route may give besides its own (each route's description names the rest).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    401: _error("No valid API key", "unauthorized", "the API key is not valid or was revoked"),
    422: _error("The request is not valid", "invalid_request", "name: Field required"),
    503: _error(
        "The database or Redis is down (with Retry-After)",
        "service_unavailable",
        "the database is unavailable; retry shortly",
    ),
}


def create_app(
    settings: Settings | None = None,
    *,
    resources_factory: ResourcesFactory | None = None,
    auth: bool = True,
    loopback: bool = True,
    sse_keepalive_s: float = KEEPALIVE_S,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The Bobbin API.

    ``resources_factory`` makes the Resources at startup (default:
    ``open_resources(settings, loopback=loopback)``); the app closes them at
    shutdown. ``auth=False`` runs without API keys (the CLI allows that on
    loopback only). ``sse_keepalive_s`` spaces keep-alive comments on streams.
    """
    settings = settings or get_settings()
    metrics = Metrics()

    async def default_factory(s: Settings) -> Resources:
        return await open_resources(s, loopback=loopback)

    factory = resources_factory or default_factory

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Here, not earlier: uvicorn configures its own loggers after the app is made.
        if (json_logs := json_logs_from_env()) is not None:
            configure_logging(json=json_logs)
        async with AsyncExitStack() as stack:
            resources = await factory(settings)
            stack.push_async_callback(resources.aclose)
            await store_bootstrap_key(resources.db, settings)
            hub = EventHub(resources.redis)
            stack.push_async_callback(hub.aclose)
            kicker = Kicker(make_celery(settings))
            stack.push_async_callback(kicker.aclose)
            app.state.bobbin = ApiState(
                resources=resources,
                hub=hub,
                kicker=kicker,
                auth=auth,
                keepalive_s=sse_keepalive_s,
                holder=f"api-{socket.gethostname()}-{os.getpid()}",
            )
            metrics.track_streams(lambda: hub.active_streams)
            stop_refresh = asyncio.Event()
            refresher = asyncio.create_task(
                metrics.refresh_forever(resources, stop_refresh), name="metrics"
            )
            stack.push_async_callback(_stop, refresher, stop_refresh)
            yield

    # /docs from the package's own assets: it works offline. No /redoc: its page fetches
    # a logo from a CDN.
    app = FastAPIOffline(
        title="Bobbin",
        summary="Runs AI agents as queued background jobs.",
        version="1",
        lifespan=lifespan,
        static_url="/docs/assets",
        redoc_url=None,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(health.router)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)
    for module in (providers, projects, sessions, agents, turns, events, approvals):
        v1.include_router(module.router)
    app.include_router(v1)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _stop(task: asyncio.Task[None], stop: asyncio.Event, timeout_s: float = 5.0) -> None:
    """Let ``task`` finish what it is doing, then end; cancel it only if it hangs."""
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
