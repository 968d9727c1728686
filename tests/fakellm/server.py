"""``FakeLLM``: one HTTP server speaking the Anthropic and OpenAI wire protocols.

It runs on its own event loop, either on a background thread of the test
process (``with FakeLLM() as llm``) or as a process (``python -m tests.fakellm``).
Routes: ``POST /v1/messages`` (Anthropic), ``POST /v1/chat/completions``
(OpenAI), ``GET /v1/models`` (Anthropic's shape when the request carries
``x-api-key`` or ``anthropic-version``, else OpenAI's), and the control
routes under ``/_fake/`` (see ``_control``). Anthropic SDKs take
``llm.base_url`` as their base URL, OpenAI SDKs ``llm.base_url + "/v1"``.

Like the real APIs, a model call whose conversation leaves a tool call without
its result (or a result without its call) answers 400 with the provider's message.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from tests.fakellm import anthropic_wire, http11, openai_wire
from tests.fakellm.replies import Answer, Reply, ScriptQueue, default_reply, make_answer

logger = logging.getLogger(__name__)

_MODEL_ROUTES = {
    ("POST", "/v1/messages"): anthropic_wire,
    ("POST", "/v1/chat/completions"): openai_wire,
}


@dataclass
class FakeConfig:
    """Server-wide behaviour; a ``Reply``'s own latency and token delay win over it."""

    latency_s: float = 0.0
    token_delay_s: float = 0.0
    api_keys: list[str] | None = None  # None: any key is accepted
    models: list[str] = field(default_factory=lambda: ["fake-large", "fake-small"])
    # A provider's rate limit: beyond this many model requests a second per API key
    # (a one-second bucket), answer 429 with Retry-After (None: no limit).
    requests_per_s: float | None = None
    retry_after_s: float = 2.0
    limited_keys: list[str] | None = None  # the keys the limit applies to (None: every key)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FakeLLM:
    """A scriptable fake LLM server.

    ``script()`` queues replies; ``configure()`` sets ``FakeConfig`` fields;
    ``requests`` lists the model API requests received (oldest first, at most
    ``max_recorded``); ``connections_accepted`` counts TCP connections that
    carried a model API request (control-only connections are not counted).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_recorded: int = 10_000,
        **config: Any,
    ) -> None:
        self.host = host
        self.port = port
        self._defaults = FakeConfig(**config)
        self.config = dataclasses.replace(self._defaults)
        self._scripts = ScriptQueue()
        self._lock = threading.Lock()
        self._recorded: collections.deque[RecordedRequest] = collections.deque(maxlen=max_recorded)
        self._serial = 0
        self._reset_counters()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- in-process control --------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def script(self, reply: Reply, match: str | None = None, times: int | None = 1) -> None:
        """Answer with ``reply`` the next ``times`` requests whose last user text has ``match``.

        ``match=None`` matches any request; ``times=None`` keeps the script until ``reset()``.
        """
        self._scripts.push(reply, match, times)

    def configure(self, **changes: Any) -> FakeConfig:
        """Change ``FakeConfig`` fields (latency_s, token_delay_s, api_keys, models)."""
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)
            return self.config

    def reset(self) -> None:
        """Forget scripts, recorded requests and counters, and restore the initial config."""
        self._scripts.clear()
        with self._lock:
            self.config = dataclasses.replace(self._defaults)
            self._recorded.clear()
            self._reset_counters()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    @property
    def connections_accepted(self) -> int:
        return self._connections

    @property
    def requests_served(self) -> int:
        return self._served

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "connections_accepted": self._connections,
                "connections_nodelay": self._nodelay,
                "requests_served": self._served,
                "requests_throttled": self._throttled,
                "scripts_pending": len(self._scripts),
            }

    def _reset_counters(self) -> None:
        self._connections = 0
        self._nodelay = 0
        self._served = 0
        self._throttled = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeLLM:
        """Serve on a background thread with its own event loop; returns once listening."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # handed to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="fakellm", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def open(self) -> None:
        """Start listening on the running loop (``self.port`` becomes the bound port)."""
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=http11.MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connections -----------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        counted = False
        try:
            while (request := await http11.read_request(reader)) is not None:
                if not counted and not request.path.startswith("/_fake/"):
                    counted = True
                    with self._lock:
                        self._connections += 1
                        self._nodelay += nodelay
                if not await self._dispatch(request, reader, writer) or not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, http11.BadRequest):
            pass
        except asyncio.CancelledError:
            # close() cancels open connections; on 3.11 asyncio's stream callback logs a
            # cancelled handler as an error, so end quietly instead (the task ends anyway).
            pass
        except Exception:  # a bug in the fake: say so loudly, answer 500, drop the connection
            logger.exception("fakellm failed to answer a request")
            writer.write(http11.json_response(500, {"error": "fakellm internal error"}))
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _dispatch(
        self, request: http11.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must be closed."""
        if request.path.startswith("/_fake/"):
            return await _send(writer, http11.json_response(*self._control(request)))
        if request.method == "GET" and request.path == "/v1/models":
            return await _send(writer, self._models(request))
        flavour = _MODEL_ROUTES.get((request.method, request.path))
        if flavour is None:
            message = f"no route for {request.method} {request.path}"
            return await _send(
                writer, http11.json_response(404, openai_wire.error_body(404, message))
            )
        return await self._model_call(flavour, request, reader, writer)

    def _models(self, request: http11.Request) -> bytes:
        """Anthropic's model list for Anthropic clients (by their headers), else OpenAI's."""
        is_anthropic = "x-api-key" in request.headers or "anthropic-version" in request.headers
        flavour = anthropic_wire if is_anthropic else openai_wire
        self._record(request, None)
        if (refusal := self._check_key(flavour, request)) is not None:
            return refusal
        return http11.json_response(200, flavour.models_body(self.config.models))

    def _record(self, request: http11.Request, body: Any) -> int:
        with self._lock:
            self._recorded.append(
                RecordedRequest(request.method, request.path, request.headers, body)
            )
            self._served += 1
            self._serial += 1
            return self._serial

    def _check_key(self, flavour: ModuleType, request: http11.Request) -> bytes | None:
        keys = self.config.api_keys
        key = flavour.api_key(request.headers)
        if keys is None or key in keys:
            return None
        status, payload = flavour.auth_error(key)
        return http11.json_response(status, payload, _request_id(flavour, 0))

    # -- model calls -------------------------------------------------------------

    async def _model_call(
        self,
        flavour: ModuleType,
        request: http11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        serial = self._record(request, body)
        if not isinstance(body, dict):
            payload = flavour.error_body(400, "request body is not a JSON object")
            return await _send(writer, http11.json_response(400, payload))
        if (refusal := self._check_key(flavour, request)) is not None:
            return await _send(writer, refusal)
        if (throttled := self._throttle(flavour, request)) is not None:
            return await _send(writer, throttled)
        if (problem := flavour.conversation_error(body)) is not None:
            return await _send(writer, http11.json_response(400, flavour.error_body(400, problem)))
        last_user_text, tool_result = flavour.conversation(body)
        reply = self._scripts.take(last_user_text) or default_reply(last_user_text, tool_result)
        config = self.config
        if reply.hang:
            while await reader.read(65536):  # until the client gives up
                pass
            return False
        latency_s = config.latency_s if reply.latency_s is None else reply.latency_s
        if latency_s > 0:
            await asyncio.sleep(latency_s)
        if reply.error_status is not None:
            return await _send(writer, _error_response(flavour, reply, request, serial))
        answer = make_answer(
            reply,
            model=str(body.get("model", "")),
            serial=serial,
            id_prefix=flavour.ID_PREFIX,
            call_prefix=flavour.CALL_PREFIX,
            body_size=len(request.body),
        )
        asked = bool((body.get("stream_options") or {}).get("include_usage"))
        answer.include_usage = asked and not reply.omit_usage
        headers = _request_id(flavour, serial)
        if not body.get("stream"):
            return await _write_whole(writer, flavour, answer, reply, headers)
        delay_s = config.token_delay_s if reply.token_delay_s is None else reply.token_delay_s
        frames = flavour.stream_frames(answer)
        if reply.no_stop:
            frames = frames[: _content_end(frames)]
        return await _write_stream(writer, frames, headers, delay_s, reply.cut_after_chunks)

    def _throttle(self, flavour: ModuleType, request: http11.Request) -> bytes | None:
        """429 with Retry-After for a request beyond the key's rate, else None."""
        rate, limited = self.config.requests_per_s, self.config.limited_keys
        key, now = flavour.api_key(request.headers) or "", time.monotonic()
        if rate is None or (limited is not None and key not in limited):
            return None
        with self._lock:
            tokens, at = self._buckets.get(key, (rate, now))
            tokens = min(rate, tokens + (now - at) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return None
            self._buckets[key] = (tokens, now)
            self._throttled += 1
        headers = {"retry-after": f"{self.config.retry_after_s:g}"}
        payload = flavour.error_body(429, "rate limit exceeded: slow down")
        return http11.json_response(429, payload, headers)

    # -- control routes ----------------------------------------------------------

    def _control(self, request: http11.Request) -> tuple[int, Any]:
        """``/_fake/{script,config,requests,reset,stats}``: the same controls over HTTP."""
        route = (request.method, request.path.removeprefix("/_fake/"))
        try:
            body = json.loads(request.body) if request.body else {}
            if route == ("POST", "script"):
                reply = Reply.from_dict(body.get("reply", {}))
                self.script(reply, body.get("match"), body.get("times", 1))
                return 200, {"scripts_pending": len(self._scripts)}
            if route == ("POST", "config"):
                return 200, dataclasses.asdict(self.configure(**body))
            if route == ("GET", "config"):
                return 200, dataclasses.asdict(self.config)
            if route == ("GET", "requests"):
                return 200, [r.to_dict() for r in self.requests]
            if route == ("POST", "reset"):
                self.reset()
                return 200, {"reset": True}
            if route == ("GET", "stats"):
                return 200, self.stats()
        except (TypeError, ValueError, AttributeError) as exc:
            return 400, {"error": f"{type(exc).__name__}: {exc}"}
        return 404, {"error": f"no control route {request.method} {request.path}"}


async def _send(writer: asyncio.StreamWriter, response: bytes) -> bool:
    writer.write(response)
    await writer.drain()
    return True


def _request_id(flavour: ModuleType, serial: int) -> dict[str, str]:
    return {flavour.REQUEST_ID_HEADER: f"req_fake{serial:06d}"}


def _error_response(
    flavour: ModuleType, reply: Reply, request: http11.Request, serial: int
) -> bytes:
    status = reply.error_status
    assert status is not None
    headers = _request_id(flavour, serial) | reply.error_headers
    if isinstance(reply.error_body, str):
        return http11.json_response(status, None, headers, raw=reply.error_body.encode())
    message = f"fake error {status}"
    if reply.echo_headers:
        message += f"; request headers: {json.dumps(request.headers)}"
    payload = reply.error_body or flavour.error_body(status, message)
    return http11.json_response(status, payload, headers)


async def _write_whole(
    writer: asyncio.StreamWriter,
    flavour: ModuleType,
    answer: Answer,
    reply: Reply,
    headers: dict[str, str],
) -> bool:
    raw = b'{"id": "broken' if reply.malformed else None
    response = http11.json_response(200, flavour.message_body(answer), headers, raw=raw)
    if reply.cut_after_chunks is not None:
        await _send(writer, response[: len(response) - 10])
        return False
    return await _send(writer, response)


async def _write_stream(
    writer: asyncio.StreamWriter,
    frames: list[tuple[bytes, bool]],
    headers: dict[str, str],
    delay_s: float,
    cut_after_chunks: int | None,
) -> bool:
    """Write SSE frames as HTTP chunks; False when the stream was cut on purpose."""
    head = http11.stream_head(headers)
    end = len(frames) if cut_after_chunks is None else _cut_index(frames, cut_after_chunks)
    if delay_s <= 0 and cut_after_chunks is None:
        writer.write(head + b"".join(http11.chunk(data) for data, _ in frames) + http11.LAST_CHUNK)
        await writer.drain()
        return True
    writer.write(head)
    sent_content = 0
    for data, is_content in frames[:end]:
        if is_content:
            if sent_content and delay_s > 0:
                await writer.drain()
                await asyncio.sleep(delay_s)
            sent_content += 1
        writer.write(http11.chunk(data))
    if cut_after_chunks is not None:
        await writer.drain()
        return False
    writer.write(http11.LAST_CHUNK)
    await writer.drain()
    return True


def _cut_index(frames: list[tuple[bytes, bool]], cut_after_chunks: int) -> int:
    """How many frames go out before the cut: ``cut_after_chunks`` content chunks, never the end."""
    content = [i for i, (_, is_content) in enumerate(frames) if is_content]
    if cut_after_chunks < len(content):
        return content[cut_after_chunks]
    return len(frames) - 1


def _content_end(frames: list[tuple[bytes, bool]]) -> int:
    content = [i for i, (_, is_content) in enumerate(frames) if is_content]
    return content[-1] + 1 if content else 1
