"""What every benchmark shares: a fresh environment and the processes that run in it.

``Bench`` gives each benchmark its own temporary directory, a fresh SQLite
file (or a dedicated PostgreSQL database, created and dropped), Redis
database 12 flushed before and after, and starts the fake LLM server, Bobbin
workers, baseline workers and the API as separate processes, so the process
being measured never shares its GIL with the fake or the driver. Everything
it starts is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from pydantic import SecretStr

from api.app import HTTP_IMPLEMENTATION
from shared.apikeys import create_key
from shared.resources import open_database
from shared.settings import Settings
from tests.fakellm import FakeLLMProcess, RemoteFakeLLM
from tests.processes import env_for

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PG_SERVER_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
PG_DATABASE = "bobbin_bench"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"
# Measurements are over when processes stop, and the environment is thrown away: a
# worker's warm (or even cold) shutdown would add ~2 s to every benchmark.
CELERY_STOP = signal.SIGKILL
# The sweeper would kick turns while a benchmark is still enqueueing its backlog.
SWEEP_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class Options:
    smoke: bool = False
    profile: bool = False  # run the measured Bobbin processes under py-spy


class Proc:
    """A child process with its own log file and process group."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, *, cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = signal.SIGTERM
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def wait_for_log(self, marker: bytes, timeout_s: float = 60) -> Proc:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker in self.log_path.read_bytes():
                return self
            self._check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready:\n{self.tail()}")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")

    def log_count(self, text: bytes) -> int:
        """How many lines of the process's log contain ``text``."""
        return sum(text in line for line in self.log_path.read_bytes().splitlines())

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the process, in KiB."""
        fields: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0])
        return fields

    def terminate(self) -> None:
        """Ask the process (and its process group) to stop."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, self.stop_signal)

    def stop(self, timeout_s: float = 20) -> None:
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Api:
    base_url: str
    key: str
    proc: Proc

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Bench:
    """One benchmark's environment: ``with Bench("throughput", options) as env: ...``."""

    name: str
    options: Options = field(default_factory=Options)
    db: str = "sqlite"  # or "postgres"
    procs: list[Proc] = field(default_factory=list)

    def __enter__(self) -> Bench:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bobbin-bench-{self.name}-"))
        self.settings = Settings(
            data_dir=self.tmp / "data",
            database_url=self._database_url(),
            redis_url=REDIS_URL,
            secret_key=SecretStr(SECRET),
            sweep_interval_s=SWEEP_INTERVAL_S,
        )
        _flush_redis()
        database, _ = open_database(self.settings)  # migrates
        self.api_key = database.run_sync(create_key, "bench")[1]
        database.dispose()
        self._fake: FakeLLMProcess | None = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.retire(*self.procs)
        if self._fake is not None:
            self._fake.__exit__(None, None, None)
        _flush_redis()
        if self.db == "postgres":
            _drop_pg_database()
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _database_url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{self.tmp / 'data' / 'bobbin.db'}"
        _drop_pg_database()
        with psycopg.connect(f"{PG_SERVER_URL}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        return f"postgresql://{PG_SERVER_URL.split('://', 1)[1]}/{PG_DATABASE}"

    # -- processes ---------------------------------------------------------------

    def fake(self, *args: str) -> RemoteFakeLLM:
        """The wire-protocol fake LLM in its own process (instant unless configured)."""
        self._fake = FakeLLMProcess(*args)
        return self._fake.__enter__()

    def fake_cpu_s(self) -> float:
        """CPU seconds the fake LLM process has used so far."""
        assert self._fake is not None and self._fake._process is not None
        return cpu_s(self._fake._process.pid)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Proc:
        proc = Proc(name, argv, env, self.tmp / f"{name}.log")
        proc.stop_signal = stop_signal
        self.procs.append(proc)
        return proc

    def retire(self, *procs: Proc) -> None:
        """Stop ``procs`` (e.g. bare workers, to leave the machine to Bobbin's)."""
        for proc in procs:  # all at once: a worker's warm shutdown takes seconds
            proc.terminate()
        for proc in reversed(procs):
            proc.stop()
            self.procs.remove(proc)

    @contextlib.contextmanager
    def profiled(self, *procs: Proc) -> Iterator[None]:
        """With ``--profile``: record ``procs`` with py-spy for the duration of the block only.

        Raw collapsed stacks of active threads go to
        ``bench/results/profiles/<bench>-<process>.txt`` (``python -m bench.profiles`` reads them).
        """
        if not self.options.profile:
            yield
            return
        out_dir = ROOT / "bench" / "results" / "profiles"
        out_dir.mkdir(parents=True, exist_ok=True)
        # BENCH_PYSPY_GIL=1: sample only the thread holding the GIL (Python CPU), else every
        # thread not idle (py-spy counts time in syscalls such as socket writes as active).
        gil = ["--gil"] if os.environ.get("BENCH_PYSPY_GIL") == "1" else []
        suffix = "-gil" if gil else ""
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        spies = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(proc.pid), "--format", "raw", "--threads"]
                + ["--rate", "250", "--nonblocking", *gil]
                + ["-o", str(out_dir / f"{self.name}-{proc.name}{suffix}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for proc in procs
        ]
        time.sleep(0.5)  # py-spy attaches
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()

    def workers(
        self,
        count: int,
        concurrency: int,
        *,
        instrument: bool = False,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> list[Proc]:
        """Start ``count`` Bobbin workers (``python -m workers.app``) and wait until they consume.

        ``instrument`` runs them under ``bench.instrumented`` (SQL and provider counters);
        ``wait=False`` returns at once (then ``ready(*procs)``): processes start in parallel.
        """
        module = (
            ["-m", "bench.instrumented", "workers.app"] if instrument else ["-m", "workers.app"]
        )
        procs = []
        for i in range(count):
            extra = {"BOBBIN_WORKER_CONCURRENCY": str(concurrency), **(env or {})}
            if instrument:
                extra["BENCH_COUNTS_FILE"] = str(self.tmp / f"counts-worker-{i}.json")
                extra["BENCH_TRACE"] = "worker" if self.options.profile else ""
            procs.append(
                self.start(
                    f"worker-{i}",
                    [sys.executable, *module],
                    env_for(self.settings, **extra),
                    stop_signal=CELERY_STOP,
                )
            )
        if wait:
            for proc in procs:
                proc.wait_for_log(b" ready.")
        return procs

    def baseline_workers(
        self, count: int, concurrency: int, fake_url: str, channel: str, *, wait: bool = True
    ) -> list[Proc]:
        """Start bare Celery workers of ``bench.baseline`` (same pool and concurrency)."""
        from bench import baseline

        procs = [
            self.start(
                f"baseline-{i}",
                [sys.executable, "-m", "bench.baseline", "worker"],
                baseline.worker_env(fake_url, concurrency, channel, REDIS_URL),
                stop_signal=CELERY_STOP,
            )
            for i in range(count)
        ]
        if wait:
            for proc in procs:
                proc.wait_for_log(b" ready.")
        return procs

    @staticmethod
    def ready(*procs: Proc) -> None:
        """Wait until started workers consume."""
        for proc in procs:
            proc.wait_for_log(b" ready.")

    def api(self, *, instrument: bool = False) -> Api:
        """One uvicorn process serving ``api.app:create_app`` with API keys required.

        ``instrument``: under ``bench.instrumented`` (traced with ``--profile``).
        """
        port = free_port()
        env = env_for(self.settings)
        prefix = ["-m"]
        if instrument:
            prefix = ["-m", "bench.instrumented"]
            env["BENCH_COUNTS_FILE"] = str(self.tmp / "counts-api.json")
            env["BENCH_TRACE"] = "api" if self.options.profile else ""
        argv = [
            sys.executable,
            *prefix,
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            HTTP_IMPLEMENTATION,
        ]
        proc = self.start("api", argv, env)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                proc._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"API not ready:\n{proc.tail()}") from None
                time.sleep(0.05)
        return Api(base_url, self.api_key, proc)

    def counts_files(self) -> list[Path]:
        return sorted(self.tmp.glob("counts-worker-*.json"))


def _flush_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def _drop_pg_database() -> None:
    with psycopg.connect(f"{PG_SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def settle(seconds: float = 0.3) -> None:
    """Let processes finish their bookkeeping (acks, logs) between phases."""
    time.sleep(seconds)


def env_summary() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "loadavg": loadavg(), "python": sys.version.split()[0]}
