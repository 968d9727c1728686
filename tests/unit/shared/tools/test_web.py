"""url_fetch, against a real HTTP server on the loopback interface (allowed here, as an
operator may; ``tests/unit/shared/test_outbound.py`` proves what is refused)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.outbound import AddressPolicy
from shared.tools import ToolContext, ToolExecutor
from shared.tools.sandbox import ToolIsolation

from .conftest import Call

PAGES: dict[str, tuple[int, str, bytes]] = {
    "/text": (200, "text/plain; charset=utf-8", "héllo from the server\n".encode()),
    "/latin1": (200, "text/plain; charset=iso-8859-1", "café\n".encode("latin-1")),
    "/json": (200, "application/json", b'{"ok": true}'),
    "/page": (
        200,
        "text/html",
        b"<html><head><title>Title</title><style>p {color: red}</style></head>"
        b"<body><h1>Heading</h1><p>Some <b>bold</b> text.</p>"
        b"<script>var secret = 1;</script></body></html>",
    ),
    "/big": (200, "text/plain", b"y" * 200_000),
    "/binary": (200, "application/octet-stream", b"\x00\x01\x02"),
    "/missing": (404, "text/plain", b"no such page"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/text")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, content_type, body = PAGES[self.path]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def ctx(root: Path, isolation: ToolIsolation) -> ToolContext:
    """The test server listens on loopback, which an operator has to allow."""
    return ToolContext(root, outbound=AddressPolicy.parse("127.0.0.1"), isolation=isolation)


async def test_url_fetch_answers_the_text_of_a_page(call: Call, server_url: str) -> None:
    result = await call("url_fetch", url=f"{server_url}/text")

    assert (result.status, result.content) == ("completed", "héllo from the server\n")


async def test_url_fetch_decodes_the_declared_charset(call: Call, server_url: str) -> None:
    result = await call("url_fetch", url=f"{server_url}/latin1")

    assert result.content == "café\n"


async def test_url_fetch_reduces_html_to_its_visible_text(call: Call, server_url: str) -> None:
    result = await call("url_fetch", url=f"{server_url}/page")

    assert result.content == "Title\nHeading\nSome bold text."


async def test_url_fetch_follows_redirects(call: Call, server_url: str) -> None:
    result = await call("url_fetch", url=f"{server_url}/redirect")

    assert result.content == "héllo from the server\n"


async def test_url_fetch_caps_the_text_it_answers(
    executor: ToolExecutor, ctx: ToolContext, server_url: str
) -> None:
    small = dataclasses.replace(ctx, output_cap_bytes=1000)

    result = await executor.execute("url_fetch", {"url": f"{server_url}/big"}, small)

    assert result.status == "completed"
    assert result.content.startswith("y" * 1000)
    assert "output truncated" in result.content
    assert len(result.content) < 1100


async def test_url_fetch_refuses_binary_content(call: Call, server_url: str) -> None:
    result = await call("url_fetch", url=f"{server_url}/binary")

    assert result.status == "failed"
    assert "not text" in result.content


async def test_url_fetch_of_an_error_status_fails_with_status_and_body(
    call: Call, server_url: str
) -> None:
    result = await call("url_fetch", url=f"{server_url}/missing")

    assert (result.status, result.content) == ("failed", "HTTP 404 Not Found\nno such page")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x"])
async def test_url_fetch_refuses_schemes_other_than_http_and_https(call: Call, url: str) -> None:
    result = await call("url_fetch", url=url)

    assert result.status == "failed"
    assert "only http and https" in result.content


async def test_url_fetch_of_an_unreachable_server_fails_clearly(call: Call) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.server_close()

    result = await call("url_fetch", url=f"http://127.0.0.1:{port}/text")

    assert result.status == "failed"
    assert "ConnectError" in result.content
