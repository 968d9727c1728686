"""A real app on the real database and Redis: in process over ASGI, or served by uvicorn (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.state import ApiState
from shared.apikeys import create_key
from shared.resources import Resources
from shared.settings import Settings

KEEPALIVE_S = 0.3


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    key: str

    @property
    def state(self) -> ApiState:
        state: ApiState = self.app.state.bobbin
        return state

    @property
    def resources(self) -> Resources:
        return self.state.resources


@asynccontextmanager
async def running_app(settings: Settings, **options: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app with its lifespan running, and an API key made for the test."""
    app = create_app(settings, sse_keepalive_s=KEEPALIVE_S, **options)
    async with app.router.lifespan_context(app):
        _, key = await app.state.bobbin.resources.db.run(create_key, "test")
        yield app, key


@asynccontextmanager
async def in_process(settings: Settings, **options: Any) -> AsyncIterator[Api]:
    async with running_app(settings, **options) as (app, key):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bobbin.test", headers=headers
        ) as client:
            yield Api(app, client, key)


@asynccontextmanager
async def served(settings: Settings, **options: Any) -> AsyncIterator[Api]:
    """The app behind a real uvicorn server on a free port (streams need real HTTP)."""
    app = create_app(settings, sse_keepalive_s=KEEPALIVE_S, **options)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        _, key = await app.state.bobbin.resources.db.run(create_key, "test")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
        ) as client:
            yield Api(app, client, key)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with in_process(settings) as running:
        yield running


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Api]:
    async with served(settings) as running:
        yield running
