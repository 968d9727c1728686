"""Every error the API answers has one shape: ``{"error": {"code", "message"}}``.

``BobbinError`` carries its own code and status. Validation errors become 422
``invalid_request`` naming the field; Starlette's own HTTP errors (unknown
route, wrong method, unreadable body) are mapped to the same shape; anything
else is logged and answers 500 ``internal_error`` without details.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import BobbinError, ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

RETRY_AFTER_S = "2"
# FastAPI answers 400 when it cannot decode a body (e.g. invalid UTF-8): that is bad input.
_HTTP_CODES = {
    400: (422, "invalid_request"),
    404: (404, "not_found"),
    405: (405, "method_not_allowed"),
    413: (413, "payload_too_large"),
}
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _bobbin_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BobbinError)
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = RETRY_AFTER_S
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status >= 500 and not isinstance(exc, ServiceUnavailable):
        log.error("request failed with %s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, headers)


def describe_validation(errors: Sequence[Any]) -> str:
    """``<field>: <what is wrong>`` for each error, joined with ``; ``."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if len(loc) > 1 and loc[0] in _LOCATIONS:
            loc = loc[1:]
        field = ".".join(loc) or "body"
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            field = "body"
            message = f"invalid JSON ({error.get('ctx', {}).get('error', 'cannot be parsed')})"
        parts.append(f"{field}: {message}")
    return "; ".join(parts) or "the request is not valid"


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", describe_validation(exc.errors()))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, code = _HTTP_CODES.get(exc.status_code, (exc.status_code, "http_error"))
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 400:
        message = "body: cannot be decoded as UTF-8 JSON"
    else:
        message = str(exc.detail)
    return error_response(status, code, message, dict(exc.headers or {}))


def _data_error(_: Request, exc: Exception) -> JSONResponse:
    # The database refused a value (e.g. a NUL character on PostgreSQL): bad input, not a crash.
    log.info("database refused a value: %s", exc)
    return error_response(422, "invalid_request", "a value in the request cannot be stored")


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BobbinError, _bobbin_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
