"""llama.cpp's OpenAI-compatible server (``llama_cpp.server``) with a cap on answer length.

Run as ``python cli/offline_server.py --max_answer_tokens 128 <llama_cpp.server args>``
(``cli/offline.py`` starts it). The offline model is a 270M *base* model: it
does not stop by itself and would fill its whole context (about a minute on
two cores), so every chat or completion request gets ``max_tokens`` lowered
to the cap. Everything else is llama_cpp.server's own app and arguments.

This file imports nothing from Bobbin: it runs by path, with only llama_cpp.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GENERATION_PATHS = ("/chat/completions", "/completions")


def cap_body(body: bytes, cap: int) -> bytes:
    """The request body with ``max_tokens`` at most ``cap`` (unchanged when not a JSON object)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    asked = payload.pop("max_completion_tokens", None) or payload.get("max_tokens")
    payload["max_tokens"] = min(asked, cap) if isinstance(asked, int) and asked > 0 else cap
    return json.dumps(payload).encode()


class CapAnswerTokens:
    """ASGI middleware: rewrite generation requests' ``max_tokens`` before the app reads them."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith(GENERATION_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = cap_body(b"".join(chunks), self.cap)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        request = {"type": "http.request", "body": body, "more_body": False}
        await self.app({**scope, "headers": headers}, _replay(request, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def main() -> None:
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args_from_model(parser, Settings)
    parser.add_argument("--max_answer_tokens", type=int, default=128)
    args = parser.parse_args()
    # parse_model_from_args returns an instance (its annotation says a class).
    server_settings = cast(ServerSettings, parse_model_from_args(ServerSettings, args))
    model_settings = [cast(ModelSettings, parse_model_from_args(ModelSettings, args))]
    app = create_app(server_settings=server_settings, model_settings=model_settings)
    uvicorn.run(
        CapAnswerTokens(app, args.max_answer_tokens),
        host=server_settings.host,
        port=server_settings.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
