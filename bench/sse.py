"""A minimal SSE client for benchmarks: raw asyncio, each frame timestamped on arrival.

It asks over HTTP/1.0, so the response body is the event stream itself
(close-delimited, no chunked framing to undo), and it does nothing per frame
but split it and note its ``event:`` and ``id:``, so that hundreds of
clients in one driver process add little to the latency they measure.
Times are ``time.monotonic()``: comparable across processes on one machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Frame:
    t: float
    type: str
    id: str


class SSEClient(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.frames: list[Frame] = []
        self.connected: asyncio.Future[None] = loop.create_future()
        self.changed = asyncio.Event()
        self._buf = b""
        self._in_head = True
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self._buf + data
        if self._in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status_line = buf[: buf.find(b"\r\n")]
            if b" 200 " not in status_line and not self.connected.done():
                self.connected.set_exception(RuntimeError(f"stream refused: {buf[:300]!r}"))
            buf, self._in_head = buf[end + 4 :], False
        *raw_frames, self._buf = buf.split(b"\n\n")
        for raw in raw_frames:
            if raw.startswith(b":"):
                if raw.startswith(b": connected") and not self.connected.done():
                    self.connected.set_result(None)
                continue
            type_ = id_ = ""
            for line in raw.split(b"\n", 2)[:2]:
                if line.startswith(b"event: "):
                    type_ = line[7:].decode()
                elif line.startswith(b"id: "):
                    id_ = line[4:].decode()
            self.frames.append(Frame(now, type_, id_))
        if raw_frames:
            self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("stream closed"))
        self.changed.set()

    async def wait_for(self, type_: str, start: int = 0, timeout_s: float = 30) -> int:
        """Index of the first frame of ``type_`` at or after ``start``."""
        async with asyncio.timeout(timeout_s):
            while True:
                self.changed.clear()
                for i in range(start, len(self.frames)):
                    if self.frames[i].type == type_:
                        return i
                await self.changed.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_stream(base_url: str, path: str, key: str, timeout_s: float = 30) -> SSEClient:
    """Connect, send the GET, and return once the server sent its ``: connected`` comment."""
    host, port = base_url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(SSEClient, host, int(port))
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    transport.write(request.encode())
    await asyncio.wait_for(asyncio.shield(client.connected), timeout_s)
    return client
