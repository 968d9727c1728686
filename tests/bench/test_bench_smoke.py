"""``python -m bench --smoke`` runs every benchmark with tiny counts, so bench/ never rots.

It checks the machinery only (every benchmark runs and records a result),
never the targets: the full counts are ``python -m bench`` (bench/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_smoke_runs_every_benchmark(tmp_path: Path) -> None:
    results = tmp_path / "smoke.jsonl"
    env = {**os.environ, "BENCH_RESULTS": str(results)}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    recorded = {
        json.loads(line)["bench"].split("[")[0] for line in results.read_text().splitlines()
    }
    assert recorded == set(BENCHMARKS)
