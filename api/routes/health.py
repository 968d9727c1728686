"""Liveness, readiness, metrics and the web console: open without an API key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from sqlalchemy import text
from sqlmodel import Session

from api.deps import ResourcesDep
from api.errors import RETRY_AFTER_S
from api.metrics import CONTENT_TYPE, Metrics
from api.schemas import ErrorDetail, HealthOut, ReadinessOut, UnreadyOut
from shared.resources import Resources

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0
CONSOLE = Path(__file__).resolve().parent.parent / "static" / "index.html"


@router.get("/healthz", summary="Check liveness")
async def healthz() -> HealthOut:
    """Answers 200 while the process is alive; it checks nothing else (see ``/readyz``)."""
    return HealthOut(status="ok")


def _select_one(session: Session) -> None:
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]


async def _check(name: str, probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        return "ok"
    except Exception as exc:  # any failure means "not ready", whatever raised it
        log.warning("readiness: %s unavailable (%s)", name, exc)
        return "unavailable"


async def _checks(resources: Resources) -> dict[str, str]:
    database, redis = await asyncio.gather(
        _check("database", resources.db.read(_select_one)),
        _check("redis", resources.redis.ping()),
    )
    return {"database": database, "redis": redis}


@router.get(
    "/readyz",
    response_model=ReadinessOut,  # documentation only: the route answers a JSONResponse
    responses={503: {"model": UnreadyOut, "description": "The database or Redis is down"}},
    summary="Check readiness",
)
async def readyz(resources: ResourcesDep) -> JSONResponse:
    """200 when the database and Redis answer; otherwise 503 naming which does not.

    A 503 carries ``Retry-After`` and the ``service_unavailable`` error code.
    """
    checks = await _checks(resources)
    down = [name for name, status in checks.items() if status != "ok"]
    if not down:
        return JSONResponse(ReadinessOut(status="ok", checks=checks).model_dump())
    body = UnreadyOut(
        status="unavailable",
        checks=checks,
        error=ErrorDetail(code="service_unavailable", message=f"unavailable: {', '.join(down)}"),
    )
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": RETRY_AFTER_S})


@router.get("/metrics", response_class=PlainTextResponse, summary="Get Prometheus metrics")
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format; Bobbin's metric names start with ``bobbin_``.

    Open without an API key, for scrapers.
    """
    registry: Metrics = request.app.state.metrics
    return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)


@router.get("/", include_in_schema=False)
async def console() -> FileResponse:
    """The web console (it asks for the API key itself)."""
    return FileResponse(CONSOLE, media_type="text/html")
