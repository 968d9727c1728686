"""A waterfall of one turn from the traces of ``bench.instrumented`` (``BENCH_TRACE``).

Benchmark 1 runs turns one at a time, so every traced call that starts
inside a turn's window (POST -> ``turn_completed`` seen by the driver)
belongs to that turn. For each step: when it starts after the POST, how long
it lasts in all, and how often it runs per turn, as medians over the turns.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections import defaultdict
from pathlib import Path

from bench.instrumented import read_trace

Record = tuple[str, str, float, float]  # label, thread, start, end


def load(*paths: Path, process: list[str]) -> list[Record]:
    """Records of several processes, each label prefixed with its process's name and
    pool threads named by their pool (``ThreadPoolExecutor-0_*``)."""
    records: list[Record] = []
    for path, name in zip(paths, process, strict=True):
        records += [
            (f"{name}: {label}", re.sub(r"_\d+$", "_*", thread), s, e)
            for label, thread, s, e in read_trace(path)
        ]
    return sorted(records, key=lambda r: r[2])


def waterfall(windows: list[tuple[float, float]], records: list[Record]) -> list[str]:
    """Rows ``+start ms  duration ms  xcount  label [thread]``, ordered by median start."""
    starts = [r[2] for r in records]
    steps: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
        lambda: {"offset": [], "total": [], "count": []}
    )
    for t0, t1 in windows:
        inside = records[bisect.bisect_left(starts, t0) : bisect.bisect_right(starts, t1)]
        seen: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for record in inside:
            seen[(record[0], record[1])].append(record)
        for key, calls in seen.items():
            steps[key]["offset"].append(min(r[2] for r in calls) - t0)
            steps[key]["total"].append(sum(r[3] - r[2] for r in calls))
            steps[key]["count"].append(len(calls))
    frequent = {k: v for k, v in steps.items() if len(v["offset"]) >= len(windows) / 2}
    rows = sorted(frequent.items(), key=lambda kv: statistics.median(kv[1]["offset"]))
    lines = []
    for (label, thread), v in rows:
        start_ms = statistics.median(v["offset"]) * 1000
        total_ms = statistics.median(v["total"]) * 1000
        count = statistics.median(v["count"])
        lines.append(f"+{start_ms:6.2f} ms {total_ms:6.2f} ms x{count:g}  {label} [{thread}]")
    return lines
