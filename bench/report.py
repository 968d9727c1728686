"""Results: percentiles, targets judged PASS/MISS, a printed row and a JSON line per result.

Full runs append to ``bench/results/latest.jsonl``; smoke runs to
``bench/results/smoke.jsonl`` (not kept in git), so CI never dirties the
recorded figures. ``BENCH_RESULTS`` overrides the path.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import ROOT, env_summary

RESULTS_DIR = ROOT / "bench" / "results"
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0-100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p95/p99/max of seconds, in milliseconds."""
    if not values_s:
        return {}
    return {
        f"{prefix}p50_ms": round(percentile(values_s, 50) * 1000, 2),
        f"{prefix}p95_ms": round(percentile(values_s, 95) * 1000, 2),
        f"{prefix}p99_ms": round(percentile(values_s, 99) * 1000, 2),
        f"{prefix}max_ms": round(max(values_s) * 1000, 2),
    }


@dataclass
class Target:
    what: str
    value: float
    op: str
    limit: float

    @property
    def passed(self) -> bool:
        return bool(_OPS[self.op](self.value, self.limit))

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        return f"{verdict} {self.what} {self.value:g} {self.op} {self.limit:g}"


@dataclass
class Result:
    bench: str
    command: str
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: str = ""

    def row(self) -> str:
        metrics = " ".join(f"{k}={v}" for k, v in self.metrics.items())
        lines = [f"[{self.bench}] {metrics}"]
        lines += [f"    {target}" for target in self.targets]
        return "\n".join(lines)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def results_path(smoke: bool, profile: bool = False) -> Path:
    """Full runs: latest.jsonl; smoke runs: smoke.jsonl; profiled runs (perturbed by py-spy
    and tracing): profile.jsonl. ``BENCH_RESULTS`` overrides."""
    override = os.environ.get("BENCH_RESULTS")
    if override:
        return Path(override)
    name = "smoke" if smoke else "profile" if profile else "latest"
    return RESULTS_DIR / f"{name}.jsonl"


def record(result: Result, *, smoke: bool, profile: bool = False) -> None:
    """Print the result's row and append it as one JSON line."""
    print(result.row(), flush=True)
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "smoke": smoke,
        "profiled": profile,
        "commit": _git_commit(),
        "env": env_summary(),
        **asdict(result),
        "targets": [
            {**asdict(t), "passed": t.passed, "verdict": "PASS" if t.passed else "MISS"}
            for t in result.targets
        ],
    }
    path = results_path(smoke, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(line) + "\n")
