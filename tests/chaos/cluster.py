"""A whole Bobbin on one machine for fault tests: its own Redis, a database, an API
process, worker processes and a fake LLM process, every one of which can be broken.

Redis is a private ``redis-server`` on a free loopback port (never the machine's
service), so it can be stopped and restarted at will; it keeps nothing on disk,
so a restart loses the broker's queue, as a crashed Redis without AOF would.
PostgreSQL faults use a dedicated database (``bobbin_chaos``): its backends are
terminated and it is closed to new connections, never the server itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from shared.db import Database
from shared.migrate import migrate
from shared.settings import Settings
from tests.fakellm import FakeLLMProcess, RemoteFakeLLM
from tests.processes import ApiProcess, WorkerProcess, free_port

SECRET = "chaos-secret-key-that-is-long-enough-0123456789"
PG_ADMIN_URL = os.environ.get(
    "BOBBIN_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CHAOS_PG_DB = "bobbin_chaos"


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:g} s: {what or predicate}")
        time.sleep(interval_s)


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 that can be stopped, killed and restarted."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 10) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        argv += ["--logfile", str(self.workdir / "redis.log"), "--maxclients", "2000"]
        self.proc = subprocess.Popen(argv, start_new_session=True)
        wait_until(self.answers, timeout_s, what=f"redis on port {self.port}")
        return self

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGKILL (a crash) or SIGTERM (a clean stop); nothing is saved."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 1.0, *, kill: bool = True) -> None:
        """Crash Redis, keep it down ``down_s`` seconds, start it again empty on the same port."""
        self.stop(kill=kill)
        time.sleep(down_s)
        self.start()
        self.restarts += 1


# -- PostgreSQL: a dedicated database, broken without touching the server ----------------


def pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


def chaos_pg_url(name: str = CHAOS_PG_DB) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg://{base}/{name}"


def fresh_pg_database(name: str = CHAOS_PG_DB) -> str:
    """(Re)create the dedicated database, migrated; returns its SQLAlchemy URL."""
    with pg_admin() as conn:
        if _exists(conn, name):
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            terminate_backends(name, conn)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = chaos_pg_url(name)
    db = Database(url)
    migrate(db)
    db.dispose()
    return url


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def terminate_backends(name: str = CHAOS_PG_DB, conn: psycopg.Connection[Any] | None = None) -> int:
    """Drop every connection to the database (as a failover or a network cut would)."""
    with contextlib.ExitStack() as stack:
        admin = conn or stack.enter_context(pg_admin())
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
        return len(rows)


def set_pg_accepting(accepting: bool, name: str = CHAOS_PG_DB) -> None:
    """Close the database to new connections (and drop the open ones), or open it again."""
    with pg_admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(accepting).lower()}')
        if not accepting:
            terminate_backends(name, conn)


# -- the cluster -------------------------------------------------------------------------


@dataclass
class ClusterOptions:
    """Knobs of the processes under test (``BOBBIN_*``); short leases make recovery quick."""

    db: str = "sqlite"  # or "postgres" (the dedicated database)
    lease_s: float = 4.0
    lease_renew_s: float = 1.0
    sweep_interval_s: float = 1.0
    shutdown_timeout_s: float = 6.0
    max_attempts: int = 3
    turn_timeout_s: float = 120.0
    concurrency: int = 20
    llm_latency_s: float = 0.0
    llm_token_delay_s: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)


class Cluster:
    """Everything Bobbin needs, started in ``start()`` and stopped (all of it) in ``stop()``."""

    def __init__(self, workdir: Path, options: ClusterOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or ClusterOptions()
        self.redis = RedisServer(workdir / "redis")
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self.api: ApiProcess | None = None
        self.llm: RemoteFakeLLM | None = None
        self._llm_process: FakeLLMProcess | None = None
        self.settings: Settings | None = None
        self.kills = 0
        self._db: Database | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, workers: int = 1, *, api: bool = True) -> Cluster:
        try:
            self.redis.start()
            self.settings = self._settings()
            args = ["--latency-s", str(self.options.llm_latency_s)]
            args += ["--token-delay-s", str(self.options.llm_token_delay_s)]
            self._llm_process = FakeLLMProcess(*args)
            self.llm = self._llm_process.__enter__()
            if api:
                self.api = ApiProcess(self.settings, self.workdir / "api.log", **self._env())
                self.api.wait_ready()
            started = [self.start_worker(wait=False) for _ in range(workers)]
            for worker in started:
                worker.wait_ready(60)
        except BaseException:
            self.stop()
            raise
        return self

    def _settings(self) -> Settings:
        o = self.options
        data_dir = self.workdir / "data"
        if o.db == "postgres":
            database_url = fresh_pg_database()
        else:
            database_url = f"sqlite:///{data_dir / 'bobbin.db'}"
            data_dir.mkdir(exist_ok=True)
            db = Database(database_url)
            migrate(db)
            db.dispose()
        return Settings(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=self.redis.url(0),
            secret_key=SECRET,
            lease_s=o.lease_s,
            lease_renew_s=o.lease_renew_s,
            sweep_interval_s=o.sweep_interval_s,
            shutdown_timeout_s=o.shutdown_timeout_s,
            max_attempts=o.max_attempts,
            turn_timeout_s=o.turn_timeout_s,
        )

    def _env(self) -> dict[str, str]:
        o = self.options
        return {
            "BOBBIN_MAX_ATTEMPTS": str(o.max_attempts),
            "BOBBIN_TURN_TIMEOUT_S": str(o.turn_timeout_s),
            **o.extra_env,
        }

    def stop(self) -> None:
        """Stop every process this cluster started (workers first, Redis last)."""
        for worker in self.workers + self.retired:
            with contextlib.suppress(Exception):
                worker.kill()  # nothing to keep: a clean stop is a test of its own
                worker.stop()  # closes the log
        self.workers, self.retired = [], self.retired + self.workers
        if self.api is not None:
            with contextlib.suppress(Exception):
                self.api.stop()
        if self._llm_process is not None:
            with contextlib.suppress(Exception):
                self._llm_process.__exit__(None, None, None)
            self._llm_process = None
        self.redis.stop()
        if self._db is not None:
            self._db.dispose()
            self._db = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- workers ---------------------------------------------------------------------

    def start_worker(self, *, wait: bool = True, **env: str) -> WorkerProcess:
        assert self.settings is not None
        n = len(self.workers) + len(self.retired)
        worker = WorkerProcess(
            self.settings,
            self.workdir / f"worker-{n}.log",
            self.options.concurrency,
            **(self._env() | env),
        )
        self.workers.append(worker)
        return worker.wait_ready(60) if wait else worker

    def kill_worker(
        self, worker: WorkerProcess | None = None, rng: random.Random | None = None
    ) -> WorkerProcess:
        """SIGKILL a worker (a random live one by default) and its process group."""
        live = [w for w in self.workers if w.proc.poll() is None]
        victim = worker or (rng or random).choice(live)
        victim.kill()
        self.kills += 1
        self._retire(victim)
        return victim

    def terminate_worker(self, worker: WorkerProcess, timeout_s: float = 60) -> tuple[int, float]:
        """SIGTERM a worker; returns its exit code and how long it took to exit."""
        started = time.monotonic()
        code = worker.terminate(timeout_s)
        self._retire(worker)
        return code, time.monotonic() - started

    def _retire(self, worker: WorkerProcess) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
            self.retired.append(worker)

    # -- what the processes said -------------------------------------------------------

    def logs(self) -> dict[str, str]:
        paths = [self.workdir / "api.log", *sorted(self.workdir.glob("worker-*.log"))]
        return {p.name: p.read_text(errors="replace") for p in paths if p.exists()}

    @property
    def db(self) -> Database:
        """The test's own connection to the cluster's database (disposed in ``stop()``)."""
        assert self.settings is not None
        if self._db is None:
            self._db = Database(self.settings.effective_database_url)
        return self._db
