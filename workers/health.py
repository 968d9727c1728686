"""The worker container's health check: ``python -m workers.health --check``.

It reads the worker's own metrics on ``BOBBIN_WORKER_METRICS_PORT`` and fails
when the event loop's heartbeat is older than 30 s: a worker whose loop is
stuck holds turns it cannot run.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request

from workers.metrics import PORT_ENV, port_from_env

HEALTHY_HEARTBEAT_AGE_S = 30.0


def check(port: int, max_age_s: float = HEALTHY_HEARTBEAT_AGE_S, timeout_s: float = 3.0) -> str:
    """Why the worker on ``port`` is unhealthy, or "" when its event loop beat recently."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            text = response.read().decode()
    except OSError as exc:
        return f"no metrics at {url}: {exc}"
    for line in text.splitlines():
        if line.startswith("bobbin_worker_heartbeat_timestamp_seconds "):
            age_s = time.time() - float(line.split()[1])
            return "" if age_s <= max_age_s else f"the event loop last beat {age_s:.0f} s ago"
    return "no heartbeat in the metrics"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.health")
    parser.add_argument("--check", action="store_true", help="health check: exit 1 if unhealthy")
    parser.add_argument("--max-age-s", type=float, default=HEALTHY_HEARTBEAT_AGE_S)
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 2
    port = port_from_env()
    if port is None:
        print(f"{PORT_ENV} is not set: the worker serves no metrics to check", file=sys.stderr)
        return 1
    reason = check(port, args.max_age_s)
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
