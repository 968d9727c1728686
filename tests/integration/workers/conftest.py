from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from tests.processes import WorkerProcess


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes with the test's settings; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(concurrency: int = 20, **env: str) -> WorkerProcess:
        proc = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", concurrency, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
