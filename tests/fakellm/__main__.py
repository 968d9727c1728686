"""``python -m tests.fakellm --port N``: serve the fake LLM until SIGTERM or Ctrl-C.

Prints ``fakellm listening on <base url>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.fakellm.server import FakeLLM


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakellm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--token-delay-s", type=float, default=0.0)
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accept only these keys (repeatable)"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    llm = FakeLLM(
        args.host,
        args.port,
        latency_s=args.latency_s,
        token_delay_s=args.token_delay_s,
        api_keys=args.api_keys,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await llm.open()
    print(f"fakellm listening on {llm.base_url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await llm.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
