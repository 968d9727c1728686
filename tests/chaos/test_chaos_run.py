"""CI's shortened chaos run: 100 messages over 10 agents, 3 workers, two SIGKILLs and one
Redis crash. The full run is ``python -m tests.chaos`` (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import ChaosPlan, run_chaos

SHORT = ChaosPlan(
    messages=100,
    agents=10,
    workers=3,
    kill_every_s=3.0,
    max_kills=2,
    redis_restarts=1,
    send_rate_per_s=10.0,
    drain_timeout_s=120.0,
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_chaos_run_loses_duplicates_and_strands_nothing(tmp_path: Path) -> None:
    report = run_chaos(SHORT, tmp_path)
    print(report.table())
    assert report.ok, "\n".join([report.table(), *report.details])
    assert report.messages_accepted == SHORT.messages
    assert report.worker_kills == 2 and report.redis_restarts == 1
    assert report.turns_completed + sum(report.turns_failed.values()) == SHORT.messages
    assert set(report.turns_failed) <= {"worker_lost"}
