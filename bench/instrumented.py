"""``python -m bench.instrumented MODULE [ARGS...]``: run a Bobbin process with counters.

With ``BENCH_TRACE=worker`` (or ``api``) it also times the steps of a turn (``TRACED``: the
Celery task, the claim, every database call and transaction, the agent's
start, provider, model round and completion, appends and publishes, the
API's request and kick) into ``<counts file>.trace.jsonl``; benchmark 1
with ``--profile`` turns those into a waterfall of one turn.

Counts, in the process it runs (a worker: ``workers.app``), every SQL
statement the DB-API cursor executes (by verb and table: ``SELECT thread``,
``UPDATE thread``, ``BEGIN IMMEDIATE``...), every commit, and every provider
the registry builds. A daemon thread writes a JSON snapshot to
``$BENCH_COUNTS_FILE`` every 0.1 s, so the driver can take the difference
over a measured window. Nothing in Bobbin changes: the listeners hang on
SQLAlchemy's ``Engine`` class, and ``shared.sql.Prepared`` (statements run on
the DB-API cursor, past those listeners) and the registry's ``_build`` are
wrapped.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def statement_kind(statement: str) -> str:
    """``VERB table`` for a SQL statement (``BEGIN IMMEDIATE`` and the like as they are)."""
    words = statement.split(None, 2)
    verb = words[0].upper() if words else "?"
    if verb in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA"):
        return " ".join(w.upper() for w in words[:2])
    match = _TABLE.search(statement)
    return f"{verb} {match.group(1) if match else '?'}"


def read_counts(path: Path) -> dict[str, Any]:
    """The last snapshot a process wrote (empty before its first one)."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def diff_counts(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    keys = set(before) | set(after)
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)
    }


def _install(counts: Counter[str], lock: threading.Lock) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from shared.providers.registry import ProviderRegistry
    from shared.sql import Prepared

    def count(statement: str, many: bool) -> None:
        with lock:
            counts["statements"] += 1
            counts[f"sql {statement_kind(statement)}"] += 1
            if many:
                counts["executemany"] += 1

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, many: bool) -> None:
        count(statement, many)

    execute, execute_many = Prepared.execute, Prepared.execute_many
    texts: dict[int, str] = {}  # compiling a statement to text costs more than running it

    def text(prepared: Prepared) -> str:
        return texts.get(id(prepared)) or texts.setdefault(id(prepared), str(prepared.statement))

    def counted_execute(self: Prepared, session: Any, params: Any) -> Any:
        count(text(self), False)
        return execute(self, session, params)

    def counted_execute_many(self: Prepared, session: Any, rows: Any) -> None:
        count(text(self), True)
        execute_many(self, session, rows)

    Prepared.execute = counted_execute  # type: ignore[method-assign]
    Prepared.execute_many = counted_execute_many  # type: ignore[method-assign]

    @event.listens_for(Engine, "commit")
    def _commit(_conn: Any) -> None:
        with lock:
            counts["commits"] += 1

    build = ProviderRegistry._build

    def counted_build(self: ProviderRegistry, target: Any) -> Any:
        with lock:
            counts["providers_built"] += 1
        return build(self, target)

    ProviderRegistry._build = counted_build  # type: ignore[method-assign]


# -- tracing: when and how long the steps of a turn run (BENCH_TRACE=1) -----------------

# (module, attribute path) per process kind: coroutine and plain functions, wrapped in place.
_COMMON = (
    ("shared.db", "Database.run"),
    ("shared.db", "Database.read"),
    ("shared.db", "Database._transaction"),
)
TRACED = {
    "worker": (
        ("workers.runtime", "WorkerRuntime.run_kick"),  # the Celery pool thread's task
        ("workers.runtime", "run_kick"),
        ("workers.runner", "rehydrate_agent"),
        ("shared.agents.agent", "Agent._start"),
        ("shared.agents.agent", "Agent.initialize"),
        ("shared.agents.agent", "Agent._model_round"),
        ("shared.agents.agent", "Agent._complete"),
        ("shared.threads", "ThreadWriter.append"),
        ("shared.bus", "RedisSink.publish"),
        *_COMMON,
    ),
    "api": (
        ("api.middleware", "MetricsMiddleware.__call__"),
        ("api.state", "Kicker.kick"),
        ("shared.queue", "KickSender.send_kick"),
        *_COMMON,
    ),
}
_TRACE: list[tuple[str, str, float, float]] = []


def _label(name: str, args: tuple[Any, ...]) -> str:
    """Database calls are labelled by the function they run (``db.run _claim``)."""
    if name in ("Database.run", "Database.read", "Database._transaction"):
        fn = args[1]  # (self, fn, ...) and, for the static _transaction, (engine, fn, ...)
        inner = str(getattr(fn, "__qualname__", None) or type(fn).__name__)
        return f"{name.split('.')[1].lstrip('_')} {inner.rsplit('.', 1)[-1]}"
    if name == "MetricsMiddleware.__call__":
        return "api request"
    return name


def _wrap(module_name: str, path: str) -> None:
    import functools
    import importlib
    import inspect

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    *owners, attr = path.split(".")
    owner: Any = module
    for name in owners:
        owner = getattr(owner, name, None)
        if owner is None:
            return
    raw = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if raw is None:
        return
    static = isinstance(raw, staticmethod)
    fn = raw.__func__ if static else raw

    if inspect.iscoroutinefunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(path, args, start)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                _record(path, args, start)

    functools.update_wrapper(wrapper, fn)
    setattr(owner, attr, staticmethod(wrapper) if static else wrapper)


def _record(path: str, args: tuple[Any, ...], start: float) -> None:
    _TRACE.append((_label(path, args), threading.current_thread().name, start, time.monotonic()))


def read_trace(path: Path) -> list[tuple[str, str, float, float]]:
    """Every traced call a process wrote: (label, thread, start, end) in CLOCK_MONOTONIC."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    except OSError:
        return []
    return [(str(label), str(thread), float(s), float(e)) for label, thread, s, e in rows]


def _snapshots(path: Path, counts: Counter[str], lock: threading.Lock) -> None:
    tmp = path.with_suffix(".tmp")
    trace = path.with_suffix(".trace.jsonl")
    last: dict[str, int] = {}
    while True:
        with lock:
            now = dict(counts)
        if now != last:
            tmp.write_text(json.dumps(now))
            tmp.replace(path)
            last = now
        if _TRACE:
            records = _TRACE[:]
            del _TRACE[: len(records)]
            with trace.open("a") as out:
                out.writelines(json.dumps(r) + "\n" for r in records)
        time.sleep(0.1)


def main() -> None:
    module, *args = sys.argv[1:]
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    _install(counts, lock)
    for module_name, attr_path in TRACED.get(os.environ.get("BENCH_TRACE", ""), ()):
        _wrap(module_name, attr_path)
    path = Path(os.environ["BENCH_COUNTS_FILE"])
    threading.Thread(target=_snapshots, args=(path, counts, lock), daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
