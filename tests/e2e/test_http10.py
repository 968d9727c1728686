"""An HTTP/1.0 client (curl -0, a proxy speaking 1.0 upstream) can read an event stream."""

from __future__ import annotations

import asyncio

import httpx

from tests.e2e.flows import create_instance, create_session, send
from tests.fakellm import FakeLLM, Reply
from tests.processes import ApiProcess, WorkerProcess


async def test_an_http10_client_reads_a_stream_without_chunked_framing(
    client: httpx.AsyncClient, api_server: ApiProcess, llm: FakeLLM, worker: WorkerProcess
) -> None:
    instance = await create_instance(client, llm)
    session = await create_session(client, instance)
    agent_id = f"{session['id']}.1"
    reader, writer = await asyncio.open_connection("127.0.0.1", api_server.port)
    writer.write(
        f"GET /v1/agents/{agent_id}/events/stream HTTP/1.0\r\n"
        f"Authorization: Bearer {api_server.key}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()  # a 1.0 client cannot undo chunks

    llm.script(Reply(text="plain frames"), match="hello")
    await send(client, agent_id, "hello")
    body = b""
    while b"event: turn_completed" not in body:
        body += await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert body.startswith(b": connected\n\n")
    assert b"data: " in body and b"plain frames" in body
