"""CI's short Schemathesis run: every operation of the schema, positive and negative cases,
with a key, without one and with a wrong one, against a real API process. The full run is
``python -m tests.fuzz`` (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.schema import Fuzzer, all_operations
from tests.fuzz.target import start_target

EXAMPLES = 5  # per operation and mode with a key (a quarter of that without): ~400 cases


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_schemathesis_finds_no_5xx_and_only_clear_4xx(tmp_path: Path) -> None:
    cluster, target = start_target(tmp_path)
    try:
        fuzzer = Fuzzer(target, EXAMPLES)
        stats = fuzzer.run()
        api_log = cluster.logs()["api.log"]
    finally:
        cluster.stop()
    print(stats.summary())
    assert not stats.failures, "\n".join(stats.failures[:30])
    assert stats.cases >= 300
    every = {operation.label for operation in all_operations(fuzzer.schema)}
    assert {label.split(" [")[0] for label in stats.by_operation} == every
    assert "Traceback" not in api_log
