"""ASGI middleware: the request body size limit and request counting for ``/metrics``."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.metrics import Metrics

MAX_BODY_BYTES = 2 * 1024 * 1024


class BodyLimitMiddleware:
    """Answer 413 ``payload_too_large`` to a body over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions from body reading; the app's
                    # handler gives it the error shape.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _declared_length(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _message(self) -> str:
        return f"the request body exceeds {self.max_bytes} bytes"

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", self._message())


class MetricsMiddleware:
    """Count finished HTTP requests by method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.count_request(scope["method"], message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)
