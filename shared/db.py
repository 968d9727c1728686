"""The database: engines, the per-process executor, and one transaction per function.

Every store function is a plain sync function ``fn(session, *args)`` run as
one transaction on the database executor (one thread for SQLite, a small
pool for PostgreSQL): measured cheaper than async SQLAlchemy on the event
loop (docs/architecture.md, "The execution model"). Async code crosses over in ``Database.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from shared.errors import ServiceUnavailable
from shared.sql import raise_as_sqlalchemy

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory or another database."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.split("sqlite:///", 1)[1]
    return path if path and path != ":memory:" else None


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    path = sqlite_file(url)
    if path is not None and not Path(path).parent.is_dir():
        # Not made here: a typo in the URL would create directories (as whoever runs this).
        raise ServiceUnavailable(
            f"the directory of the SQLite database {path} does not exist: create it, "
            "or correct BOBBIN_DATABASE_URL"
        )
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        for pragma in SQLITE_PRAGMAS:
            dbapi_conn.execute(pragma)

    # A deferred BEGIN lets racing writers deadlock into "database is locked";
    # BEGIN IMMEDIATE queues them on busy_timeout instead.
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver's connection: SQLAlchemy's execution path would cost more than
        # the statement, at every transaction.
        try:
            conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]
        except Exception as exc:
            raise_as_sqlalchemy(conn, exc, begin, (), None)

    return engine


class _WriterQueue:
    """Orders a SQLite file's writers, across threads and processes, before BEGIN IMMEDIATE.

    SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, so two
    worker processes writing the same file lose milliseconds per contended
    transaction; a blocking ``flock`` hands the lock over the moment it is
    released. Writers that do not take it (the sqlite3 shell) still meet
    SQLite's lock and ``busy_timeout``.
    """

    def __init__(self, db_path: str) -> None:
        self._fd = os.open(db_path + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = threading.Lock()  # flock does not exclude threads sharing the fd

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class Database:
    """Engines and the executor of one process. Close it with ``dispose()``."""

    def __init__(self, url: str, *, pool_threads: int | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._writers: _WriterQueue | None = None
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            threads = pool_threads or 1
            path = sqlite_file(url)
            if path is not None:
                self._writers = _WriterQueue(path)
        else:
            threads = pool_threads or 8
            self.engine = create_engine(
                url, pool_size=threads + 2, max_overflow=4, pool_pre_ping=True
            )
            self.read_engine = self.engine
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bobbin-db")

    async def run(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(session, *args)`` as one write transaction on the executor."""
        return await self.offload(self._write, _bound(fn, *args, **kwargs))

    async def read(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like ``run`` for a transaction that only reads (no write lock on SQLite)."""
        return await self.offload(self._read, _bound(fn, *args, **kwargs))

    async def offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args)`` on the executor: several transactions (``run_sync``,
        ``read_sync``) for one hop from the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def run_sync(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``run`` from the executor's own thread (inside ``offload``)."""
        return self._write(_bound(fn, *args, **kwargs))

    def read_sync(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``read`` from the executor's own thread (inside ``offload``)."""
        return self._read(_bound(fn, *args, **kwargs))

    def _write(self, transaction: Callable[[Session], T]) -> T:
        if self._writers is None:
            return self._transaction(self.engine, transaction)
        with self._writers.turn():
            return self._transaction(self.engine, transaction)

    def _read(self, transaction: Callable[[Session], T]) -> T:
        return self._transaction(self.read_engine, transaction)

    @staticmethod
    def _transaction(engine: Engine, fn: Callable[[Session], T]) -> T:
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                return fn(session)
        except (OperationalError, DBAPIError) as exc:
            if _is_outage(exc):
                raise ServiceUnavailable("the database is unavailable; retry shortly") from exc
            raise

    def ping(self) -> None:
        """Connect once; raises the driver's error, with its reason, when that fails."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
        if self._writers is not None:
            self._writers.close()


def _is_outage(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in ("connection", "could not connect", "server closed", "terminating")
    )


def _bound(
    fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
) -> Callable[[Session], T]:
    """``fn`` with its arguments, waiting for the transaction's session (named as ``fn``,
    for traces)."""

    def transaction(session: Session) -> T:
        return fn(session, *args, **kwargs)

    transaction.__qualname__ = getattr(fn, "__qualname__", transaction.__qualname__)
    return transaction
