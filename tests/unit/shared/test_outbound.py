"""Requests a model chooses never reach an internal address: checked after resolution, on
every redirect, and connected to the address checked. Servers on loopback only; the
resolver (the outside world's DNS) is scripted where a test needs a name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.outbound import AddressPolicy
from shared.tools import ToolContext, ToolExecutor, builtin_tools


class Server:
    """A loopback HTTP server that records the Host header of each request."""

    def __init__(self, address: str, routes: dict[str, tuple[int, dict[str, str], bytes]]):
        self.hosts: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hosts.append(self.headers["Host"])
                status, headers, body = routes[self.path]
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.http.server_address[1]
        self.url = f"http://{address}:{self.port}"
        self._thread = threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self._thread.join()


TEXT = (200, {"Content-Type": "text/plain"}, b"internal data")


@pytest.fixture
def internal() -> Iterator[Server]:
    """A service on 127.0.0.1, like Redis, PostgreSQL or the API's /metrics."""
    server = Server("127.0.0.1", {"/text": TEXT})
    yield server
    server.close()


@pytest.fixture
def executor() -> ToolExecutor:
    return ToolExecutor(builtin_tools(bash=False))


async def fetch(executor: ToolExecutor, root: Path, url: str, policy: AddressPolicy) -> str:
    result = await executor.execute("url_fetch", {"url": url}, ToolContext(root, policy))
    return f"{result.status}: {result.content}"


async def test_loopback_is_refused_by_default(
    executor: ToolExecutor, tmp_path: Path, internal: Server
) -> None:
    answer = await fetch(executor, tmp_path, f"{internal.url}/text", AddressPolicy())

    assert answer.startswith("failed: ")
    assert "127.0.0.1, an internal address" in answer and "BOBBIN_URL_FETCH_ALLOW" in answer
    assert internal.hosts == []  # never connected


async def test_a_name_is_checked_after_it_is_resolved(
    executor: ToolExecutor, tmp_path: Path, internal: Server
) -> None:
    answer = await fetch(
        executor, tmp_path, f"http://localhost:{internal.port}/text", AddressPolicy()
    )

    assert "an internal address" in answer and internal.hosts == []


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fd00::1]",
        "[fe80::1]",
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b:1::7f00:1]",  # local-use NAT64
        "[::7f00:1]",  # IPv4-compatible 127.0.0.1
        "[::ffff:0:7f00:1]",  # IPv4-translated 127.0.0.1
        "[fec0::1]",  # site-local
        "224.0.0.1",
    ],
)
async def test_internal_addresses_are_refused_without_connecting(
    executor: ToolExecutor, tmp_path: Path, address: str
) -> None:
    answer = await fetch(executor, tmp_path, f"http://{address}/latest", AddressPolicy())

    assert answer.startswith("failed: ") and "an internal address" in answer


async def test_a_name_with_any_internal_address_is_refused(
    executor: ToolExecutor, tmp_path: Path
) -> None:
    async def two_answers(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    policy = AddressPolicy(resolver=two_answers)
    answer = await fetch(executor, tmp_path, "http://mixed.example/", policy)

    assert "resolves to 127.0.0.1, an internal address" in answer


async def test_an_operator_allows_hosts_and_networks(
    executor: ToolExecutor, tmp_path: Path, internal: Server
) -> None:
    for allow in ("127.0.0.1", "127.0.0.0/8", "localhost"):
        policy = AddressPolicy.parse(f"example.org, {allow}")
        host = "localhost" if allow == "localhost" else "127.0.0.1"
        answer = await fetch(executor, tmp_path, f"http://{host}:{internal.port}/text", policy)
        assert answer == "completed: internal data", allow


async def test_a_redirect_to_an_internal_address_is_refused(
    executor: ToolExecutor, tmp_path: Path, internal: Server
) -> None:
    hop = Server("127.0.0.2", {"/go": (302, {"Location": f"{internal.url}/text"}, b"")})
    try:
        answer = await fetch(executor, tmp_path, f"{hop.url}/go", AddressPolicy.parse("127.0.0.2"))
    finally:
        hop.close()

    assert hop.hosts and internal.hosts == []
    assert "127.0.0.1, an internal address" in answer


async def test_the_request_goes_to_the_address_that_was_checked(
    executor: ToolExecutor, tmp_path: Path, internal: Server
) -> None:
    """DNS rebinding: the name's second answer (an internal address) is never used."""
    allowed = Server("127.0.0.2", {"/text": (200, {"Content-Type": "text/plain"}, b"public")})
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    policy = AddressPolicy.parse("127.0.0.2", resolver=rebinding)
    try:
        url = f"http://rebind.example:{allowed.port}/text"
        answer = await fetch(executor, tmp_path, url, policy)
    finally:
        allowed.close()

    assert answer == "completed: public"
    assert asked == ["rebind.example"]  # resolved once, then connected to that address
    assert allowed.hosts == [f"rebind.example:{allowed.port}"]  # the name kept as Host
    assert internal.hosts == []
