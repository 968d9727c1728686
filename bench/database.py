"""8. Database: benchmark 2's run on SQLite and on PostgreSQL, with SQL statements counted.

For each database: benchmark 2's scenario (2,000 turns over 100 agents, 2
workers of concurrency 100, instant model) with the workers run under
``bench.instrumented``, which counts every statement their DB-API cursors
execute and every commit. Reported: turns/s, statements and commits per
turn (kicks and warm-up excluded by snapshots), and the mix by statement.

Then the anatomy of one turn, with the same workers: one agent, 20 turns one
after another with a 3-word reply (3 streamed deltas), then 20 with a
40-word reply (40 deltas), each counted alone. If any statement ran per
event (per token, or per event of the growing history) the counts would
differ between turns. Target: every one of the 40 turns runs the same
number of statements.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.driver import enqueue_many, make_agents, send_kicks, wait_finished
from bench.harness import Bench, Options, settle
from bench.instrumented import diff_counts, read_counts
from bench.report import Result, Target
from bench.throughput import scenario, sizes
from shared.queue import make_celery
from shared.resources import open_resources

COMMAND = "python -m bench database"
SHORT = "short message"  # echoed as "echo: short message": 3 text deltas
LONG = " ".join(["word"] * 39)  # echoed: 40 text deltas


def run(options: Options) -> list[Result]:
    turns, agent_count = sizes(options)
    anatomy_turns = 2 if options.smoke else 20
    results = []
    for db in ("sqlite", "postgres"):
        with Bench(f"database-{db}", options, db=db) as env:
            llm = env.fake()
            measured = scenario(env, llm, turns, agent_count, instrument=True)
            after = [read_counts(p) for p in env.counts_files()]
            window = _sum(
                diff_counts(b, a) for b, a in zip(measured.counts_before, after, strict=True)
            )
            per_turn = asyncio.run(_anatomy(env, llm, anatomy_turns))
        statements = window.get("statements", 0)
        mix = {
            k.removeprefix("sql "): round(v / turns, 2)
            for k, v in sorted(window.items())
            if k.startswith("sql ")
        }
        short, long = per_turn[:anatomy_turns], per_turn[anatomy_turns:]
        spread = max(t["statements"] for t in per_turn) - min(t["statements"] for t in per_turn)
        results.append(
            Result(
                bench=f"database[{db}]",
                command=COMMAND,
                metrics={
                    "turns_per_s": measured.turns_per_s,
                    "failed_turns": measured.failed,
                    "statements_per_turn": round(statements / turns, 2),
                    "commits_per_turn": round(window.get("commits", 0) / turns, 2),
                    "statement_mix_per_turn": mix,
                    "one_turn_statements_short_reply": sorted({t["statements"] for t in short}),
                    "one_turn_statements_long_reply": sorted({t["statements"] for t in long}),
                    "one_turn_commits": sorted({t.get("commits", 0) for t in per_turn}),
                    "one_turn_mix": {
                        k.removeprefix("sql "): v
                        for k, v in sorted(per_turn[-1].items())
                        if k.startswith("sql ")
                    },
                },
                params={
                    "db": db,
                    "turns": turns,
                    "agents": agent_count,
                    "workers": 2,
                    "concurrency": 100,
                    "anatomy_turns_each": anatomy_turns,
                },
                targets=[Target("statement spread across single turns", spread, "<=", 0)],
            )
        )
    return results


def _sum(diffs: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for diff in diffs:
        for key, value in diff.items():
            total[key] = total.get(key, 0) + value
    return total


async def _anatomy(env: Bench, llm: Any, count: int) -> list[dict[str, int]]:
    """Statements and commits of each of ``2 * count`` turns run one at a time."""
    res = await open_resources(env.settings, concurrency=10)
    app = make_celery(env.settings)
    files = env.counts_files()
    per_turn = []
    try:
        agents = await make_agents(res, llm, 1)
        agent_id = agents.ids[0]
        for content in [SHORT] * count + [LONG] * count:
            before = [read_counts(p) for p in files]
            turn_ids = await enqueue_many(res, [(agent_id, content)])
            await asyncio.to_thread(send_kicks, app, [agent_id])
            await wait_finished(res, turn_ids, poll_s=0.02)
            await _quiet(files)
            after = [read_counts(p) for p in files]
            per_turn.append(_sum(diff_counts(b, a) for b, a in zip(before, after, strict=True)))
    finally:
        app.close()
        await res.aclose()
    settle(0.2)
    return per_turn


async def _quiet(files: list[Any], still_s: float = 0.3) -> None:
    """Wait until the workers' counters stop moving (the kick's last reads are done)."""
    last = [read_counts(p) for p in files]
    since = time.monotonic()
    while time.monotonic() - since < still_s:
        await asyncio.sleep(0.1)
        now = [read_counts(p) for p in files]
        if now != last:
            last, since = now, time.monotonic()
