"""``bobbin dev`` and ``bobbin worker`` as real processes (the fake LLM as the local server)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from cli import offline
from cli.common import database, free_port
from shared.models import ProviderInstance
from shared.settings import Settings
from tests.fakellm import FakeLLM, Reply
from tests.processes import ROOT, env_for


def start(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for(log_path: Path, marker: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if marker in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {marker!r}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {marker!r} within {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def test_worker_command_runs_until_sigterm(settings: Settings, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    proc = start(["worker", "--concurrency", "2"], env_for(settings), log_path)
    try:
        wait_for(log_path, " ready.", proc, timeout_s=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_dev_shows_a_conversation_then_stops_what_it_started(
    settings: Settings, llm: FakeLLM, tmp_path: Path
) -> None:
    llm.script(Reply(text="hello from the dev demo"), times=None)
    port = free_port()
    env = env_for(settings, BOBBIN_LOCAL_BASE_URL=llm.base_url + "/v1")
    log_path = tmp_path / "dev.log"
    proc = start(["dev", "--port", str(port)], env, log_path, cwd=tmp_path)
    try:
        output = wait_for(log_path, "Bobbin is running at", proc, timeout_s=60)
        # A second `bobbin dev` on the same data directory (another port) refuses to start.
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "dev", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert second.stderr.decode().strip().splitlines() == [
            f"error: another `bobbin dev` (PID {proc.pid}) is running on "
            f"{settings.data_dir.absolute()}: stop it first, or give this one its own "
            "BOBBIN_DATA_DIR"
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(40)
    output = log_path.read_text()

    assert code == 0, output
    assert "hello from the dev demo" in output
    assert "OFFLINE" not in output  # a provider was in the environment
    key_file = settings.data_dir / "dev-api-key"
    key = key_file.read_text().strip()
    assert key in output.splitlines()  # printed alone on its line
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    agent_id = re.search(r"bobbin chat (\S+) ", output)
    assert agent_id and agent_id.group(1).endswith(".1")
    assert output.rstrip().endswith("stopped")
    worker_pid = int(re.search(r"worker ready .*\(pid (\d+)", output).group(1))  # type: ignore[union-attr]
    assert not _alive(worker_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stopping_the_offline_model_leaves_no_env_local_pointing_at_it(
    settings: Settings,
) -> None:
    with database(settings) as (db, _):
        offline.register(db, "http://127.0.0.1:9/v1")
        assert not offline.unregister(db, "http://127.0.0.1:8/v1")  # another model's address
        assert offline.unregister(db, "http://127.0.0.1:9/v1")
        assert db.read_sync(lambda s: s.get(ProviderInstance, offline.INSTANCE_ID)) is None
