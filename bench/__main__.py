"""``python -m bench [--smoke] [--profile] [NAME ...]``: run the benchmarks (all by default).

Each benchmark prints its result rows and appends them as JSON lines to
``bench/results/latest.jsonl`` (``smoke.jsonl`` with ``--smoke``). Exits
non-zero when a benchmark fails to run; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.harness import Options, loadavg
from bench.report import record

BENCHMARKS = {
    "baseline": "bench.baseline",
    "overhead": "bench.overhead",  # 1
    "throughput": "bench.throughput",  # 2
    "concurrency": "bench.concurrency",  # 3
    "ttft": "bench.ttft",  # 4
    "fanout": "bench.fanout",  # 5
    "rehydration": "bench.rehydration",  # 6
    "connections": "bench.connections",  # 7
    "database": "bench.database",  # 8
    "flow": "bench.flow",  # 9
}
BY_NUMBER = {str(n): name for n, name in enumerate(BENCHMARKS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (or 1-8)")
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check the machinery")
    parser.add_argument(
        "--profile", action="store_true", help="record the Bobbin processes with py-spy"
    )
    args = parser.parse_args(argv)
    names = [BY_NUMBER.get(n, n) for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    options = Options(smoke=args.smoke, profile=args.profile)
    failed = []
    started = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        load_before = loadavg()  # the machine may be shared: say how busy it was
        try:
            module = importlib.import_module(BENCHMARKS[name])
            for result in module.run(options):
                result.params["loadavg_before"] = load_before
                record(result, smoke=options.smoke, profile=options.profile)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"== {name}: {time.monotonic() - t0:.1f} s", flush=True)
    print(f"== all: {time.monotonic() - started:.1f} s", flush=True)
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
