"""``python -m tests.chaos``: the chaos run against real processes, with its report.

    python -m tests.chaos --messages 1000 --agents 50 --workers 4
    python -m tests.chaos --messages 100 --agents 10 --workers 3 --db postgres

Exits 0 when nothing was lost, duplicated or left stuck; 1 otherwise. The
processes' logs stay in ``--workdir`` (a temporary directory by default).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from tests.chaos.run import ChaosPlan, run_chaos


def _parse(argv: list[str] | None) -> tuple[ChaosPlan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    defaults = ChaosPlan()
    for f in fields(ChaosPlan):
        value = getattr(defaults, f.name)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(value),
            default=value,
            help=f"(default {value})",
        )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and data here")
    parser.add_argument("--report", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args(argv)
    plan = ChaosPlan(**{f.name: getattr(args, f.name) for f in fields(ChaosPlan)})
    return plan, args


def main(argv: list[str] | None = None) -> int:
    plan, args = _parse(argv)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bobbin-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"workdir {workdir}")
    report = run_chaos(plan, workdir, log)
    print(report.table())
    for line in report.details:
        print(f"  {line}")
    if args.report:
        args.report.write_text(report.to_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
