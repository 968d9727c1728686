"""``make dev``'s start-up on a machine without PostgreSQL: only Redis is needed.

In a network namespace of its own nothing answers on 127.0.0.1 (no PostgreSQL,
no Redis): ``scripts/services.sh dev`` must pass, and ``bobbin dev`` (its API,
worker and Redis started inside the namespace, SQLite under a temporary data
directory, the fake LLM as the local server) must show its conversation.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("redis-server") is None,
        reason="needs root, iproute2 and redis-server (a network namespace of its own)",
    ),
]
LLM_PORT, API_PORT = 18080, 18000


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"bobbin-dev-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_namespace(name: str, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, "bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def test_dev_starts_with_no_postgresql_reachable(namespace: str, tmp_path: Path) -> None:
    unreachable = in_namespace(namespace, "pg_isready -h 127.0.0.1 -p 5432 -t 1")
    assert unreachable.returncode != 0  # nothing answers here
    services = in_namespace(namespace, "scripts/services.sh dev")
    assert services.returncode == 0, services.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("BOBBIN_")}
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        env.pop(name, None)
    env.update(
        BOBBIN_DATA_DIR=str(tmp_path / "data"),
        BOBBIN_LOCAL_BASE_URL=f"http://127.0.0.1:{LLM_PORT}/v1",
        PYTHONUNBUFFERED="1",
    )
    python = sys.executable
    script = (
        f"{python} -m tests.fakellm --port {LLM_PORT} & "
        f"for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{LLM_PORT}) 2>/dev/null && break; "
        "sleep 0.1; done; "
        f"exec {python} -m cli.main dev --port {API_PORT}"
    )
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "bash", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "Bobbin is running at" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: bobbin dev and the fake LLM
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    output = log_path.read_text()
    assert "echo: " in output  # the fake's answer to the greeting, streamed
    assert "postgres" not in output.lower()
