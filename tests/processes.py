"""Real Bobbin processes for integration tests: Celery workers (and API servers) as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from api.app import HTTP_IMPLEMENTATION
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOBBIN_")}
    env.update(
        BOBBIN_DATA_DIR=str(settings.data_dir),
        BOBBIN_DATABASE_URL=settings.effective_database_url,
        BOBBIN_REDIS_URL=settings.redis_url,
        BOBBIN_SECRET_KEY=settings.secret_key.get_secret_value() if settings.secret_key else "",
        BOBBIN_LEASE_S=str(settings.lease_s),
        BOBBIN_LEASE_RENEW_S=str(settings.lease_renew_s),
        BOBBIN_SWEEP_INTERVAL_S=str(settings.sweep_interval_s),
        BOBBIN_SHUTDOWN_TIMEOUT_S=str(settings.shutdown_timeout_s),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """``python -m workers.app`` with the test's settings; waits until it consumes."""

    def __init__(self, settings: Settings, log_path: Path, concurrency: int = 20, **env: str):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.app"],
            cwd=ROOT,
            env=env_for(settings, BOBBIN_WORKER_CONCURRENCY=str(concurrency), **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 30) -> WorkerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # Celery logs every thread's stack on SIGUSR1: the log says where it hung.
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(1)
                self.kill()
        return self.proc.returncode

    def stop(self) -> None:
        self.terminate(15)
        self._log.close()

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """``uvicorn --factory api.app:create_app`` with the test's settings and a fresh API key."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        from shared.apikeys import create_key
        from shared.resources import open_database

        db, _ = open_database(settings)
        _, self.key = db.run_sync(create_key, "test")
        db.dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--http",
                HTTP_IMPLEMENTATION,
            ],
            cwd=ROOT,
            env=env_for(settings, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait_ready(self, timeout_s: float = 30) -> ApiProcess:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"API not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
