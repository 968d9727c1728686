"""Shared fixtures: a real database (SQLite, or PostgreSQL with BOBBIN_TEST_DB=postgres),
a real Redis (database 9, flushed per test) and the wire-protocol fake LLM server."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from shared.db import Database
from shared.migrate import migrate
from shared.settings import Settings
from tests.fakellm import FakeLLM
from tests.processes import ApiProcess, WorkerProcess

TEST_REDIS_URL = os.environ.get("BOBBIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
PG_URL = os.environ.get("BOBBIN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
USE_POSTGRES = os.environ.get("BOBBIN_TEST_DB", "sqlite") == "postgres"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "bobbin.db"
    db = Database(f"sqlite:///{path}")
    migrate(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_migrated() -> str:
    db = Database(PG_URL)
    with db.engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        conn.commit()
    migrate(db)
    db.dispose()
    return PG_URL


# A test marked with this runs on both databases in one pytest run (races marked slow run
# in CI's one slow stage, yet must be raced on SQLite and on PostgreSQL).
ON_BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = getattr(request, "param", "postgres" if USE_POSTGRES else "sqlite")
    if kind == "postgres":
        url: str = request.getfixturevalue("_pg_migrated")
        db = Database(url)
        with db.engine.connect() as conn:
            tables = (
                conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
                .scalars()
                .all()
            )
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            conn.commit()
        db.dispose()
        return url
    template: Path = request.getfixturevalue("_sqlite_template")
    path = tmp_path / "data" / "bobbin.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        lease_renew_s=1,
        lease_s=5,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.effective_database_url)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _flush_redis() -> Iterator[None]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[object]:
    from shared.resources import open_resources

    res = await open_resources(settings, concurrency=20)
    yield res
    await res.aclose()


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


@pytest.fixture
def api_server(settings: Settings, tmp_path: Path) -> Iterator[ApiProcess]:
    """A real API process (uvicorn) on a free port, with an API key in ``.key``."""
    proc = ApiProcess(settings, tmp_path / "api.log").wait_ready()
    yield proc
    proc.stop()
