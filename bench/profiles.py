"""``python -m bench.profiles FILE [--thread NAME] [--top N] [--per COUNT]``: read a py-spy profile.

``python -m bench NAME --profile`` records each Bobbin process (workers, API)
with ``py-spy record --format raw --threads --rate 250`` (active samples
only: CPU, not waiting) into ``bench/results/profiles/<bench>-<process>.txt``.
This prints, per thread, the CPU seconds sampled, and the functions with the
most inclusive and self time (optionally per unit of work, e.g. per turn).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

RATE_HZ = 250
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_THREAD = re.compile(r"^thread \(\w+\)(?:: (?P<name>.*))?$")
_FRAME_LINE = re.compile(r" \(([^():]+):\d+\)$")


def _frame(raw: str) -> str:
    """``func (path:line)`` without the line, with site-packages paths shortened."""
    frame = _FRAME_LINE.sub(r" (\1)", raw)
    return frame.replace(".venv/lib/python3.11/site-packages/", "")


def read(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames root first, samples) for every line of a raw py-spy file."""
    rows = []
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        first, *frames = match["stack"].split(";")
        thread = _THREAD.match(first)
        name = (thread["name"] or "?") if thread else "?"
        if name.startswith(("bobbin-db", "ThreadPoolExecutor", "asyncio_")):
            name = re.sub(r"_\d+$", "_*", name)
        rows.append((name, [_frame(f) for f in frames], int(match["count"])))
    return rows


def summarize(path: Path, thread: str | None, top: int, per: int | None) -> str:
    rows = read(path)
    by_thread: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for name, frames, count in rows:
        by_thread[name] += count
        if thread is not None and not name.startswith(thread):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            self_time[frames[-1]] += count
    scale = 1000 / RATE_HZ / per if per else 1 / RATE_HZ
    unit = "ms per unit" if per else "s"
    lines = [f"{path.name}: CPU by thread ({unit})"]
    lines += [f"  {n * scale:9.2f}  {name}" for name, n in by_thread.most_common(12)]
    lines.append(f"inclusive ({thread or 'all threads'}, {total * scale:.2f} {unit} in all)")
    lines += [f"  {n * scale:9.2f}  {f}" for f, n in inclusive.most_common(top)]
    lines.append("self")
    lines += [f"  {n * scale:9.2f}  {f}" for f, n in self_time.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--thread", help="only threads whose name starts with this")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--per", type=int, help="divide by this many units of work (ms each)")
    args = parser.parse_args()
    print(summarize(args.file, args.thread, args.top, args.per))


if __name__ == "__main__":
    main()
