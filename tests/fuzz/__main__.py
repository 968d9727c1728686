"""``python -m tests.fuzz``: Schemathesis over every route of the OpenAPI schema, against a
real API process, authenticated and not. Prints the number of cases and every failure.

    python -m tests.fuzz --examples 100     # the full run (docs/reliability.md)
    python -m tests.fuzz --examples 5       # CI's short version

Exits 0 when no case got a 5xx, an unshaped 4xx, a timeout, or an answer without a key.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.schema import Fuzzer
from tests.fuzz.target import start_target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument(
        "--examples", type=int, default=100, help="cases per operation and mode with a key"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bobbin-fuzz-"))
    cluster, target = start_target(workdir)
    try:
        stats = Fuzzer(target, args.examples, args.seed).run(log)
        api_log = cluster.logs().get("api.log", "")
    finally:
        cluster.stop()
    print(stats.summary())
    for failure in stats.failures[:100]:
        print(f"  FAIL {failure}")
    tracebacks = api_log.count("Traceback")
    print(f"tracebacks in the API log: {tracebacks}")
    if args.report:
        figures = {
            "cases": stats.cases,
            "by_status": dict(stats.by_status),
            "failures": stats.failures,
            "unsendable": stats.unsendable,
            "not_generated": stats.not_generated,
            "seconds": round(stats.seconds, 1),
            "api_log_tracebacks": tracebacks,
        }
        args.report.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if not stats.failures and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
