"""Statements a turn runs every time, compiled once per dialect and run on the DB-API cursor.

SQLAlchemy's execution path costs ~25 µs per statement (an execution context,
cache lookups, events) against ~4 µs for the driver's own call, and a turn runs
~16 of them, most inside SQLite's one writer lock. ``Prepared`` keeps the
Core statement as the single definition and does, once, what SQLAlchemy does
at every call: compile it, expand constant ``IN`` lists, pick the bind and
result processors the engine's dialect uses (JSON, datetimes) for each column.
Each execution then costs a dict of parameters and one driver call, inside
the session's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

Processor = Callable[[Any], Any]


@dataclass
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind names in statement order
    positional: bool  # qmark (SQLite) binds by position, pyformat (psycopg) by name
    defaults: dict[str, Any]  # values the statement carries (LIMIT 1, IN lists)
    binds: dict[str, Processor]
    keys: tuple[str, ...]  # the result columns' names
    types: tuple[Any, ...]  # and their SQLAlchemy types
    dialect: Dialect
    binds_required: tuple[str, ...]
    # A result processor per column, chosen at the first execution: some depend on
    # the driver's type code (psycopg's numerics).
    results: tuple[Processor | None, ...] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params}
        for name, process in self.binds.items():
            values[name] = process(values[name])
        if self.positional:
            return tuple(values[name] for name in self.names)
        return values

    def processors(self, cursor: Any) -> tuple[Processor | None, ...]:
        if self.results is None:
            codes = [column[1] for column in cursor.description]
            self.results = tuple(
                type_._cached_result_processor(self.dialect, code)
                for type_, code in zip(self.types, codes, strict=True)
            )
        return self.results

    def rows(self, cursor: Any, raws: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        processors = self.processors(cursor)
        if not any(processors):
            return raws
        return [
            tuple(v if p is None else p(v) for p, v in zip(processors, raw, strict=True))
            for raw in raws
        ]


def _compile(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    required = {bind.key: None for bind in compiled.binds.values() if bind.required}
    # Constant IN lists are "expanding" parameters: expand them now, the same every time.
    expanded = compiled.construct_expanded_state(required)
    params = expanded.parameters
    binds: dict[str, Any] = {  # a processor per bind; tuple INs (a list each) are not used
        name: process
        for name, process in {**compiled._bind_processors, **expanded.processors}.items()
        if name in params
    }
    columns = compiled._result_columns or []
    return _Compiled(
        sql=expanded.statement,
        names=tuple(expanded.positiontup or ()),
        positional=expanded.positiontup is not None,
        defaults={k: v for k, v in params.items() if k not in required},
        binds=binds,
        keys=tuple(column[0] for column in columns),
        types=tuple(column[3] for column in columns),
        dialect=dialect,
        binds_required=tuple(required),
    )


ALL: list[Prepared] = []


class Prepared:
    """A Core statement run on the cursor of a session's connection, in its transaction.

    Every instance is kept in ``ALL``, so a test can run each one against
    SQLAlchemy's own ``session.execute`` and compare (this module reaches into
    SQLAlchemy's compiler, which only the versions ``pyproject.toml`` pins offer).
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}
        ALL.append(self)

    def bind_names(self, dialect: Dialect) -> tuple[str, ...]:
        """The parameters an execution must be given (those with no value of their own)."""
        compiled = self._for(dialect)
        return tuple(name for name in compiled.binds_required)

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:  # two threads may both compile it: the same result
            compiled = _compile(self.statement, dialect)
            self._by_dialect[dialect.name] = compiled
        return compiled

    def execute(self, session: Session, params: Mapping[str, Any]) -> Result:
        """Run it and return its rows."""
        return self._on_cursor(session, params, many=False)

    def run(self, session: Session, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; returns how many rows it changed."""
        return self.execute(session, params).rowcount

    def execute_many(self, session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
        self._on_cursor(session, rows, many=True).close()

    def _on_cursor(self, session: Session, params: Any, *, many: bool) -> Result:
        connection = session.connection()
        compiled = self._for(connection.dialect)
        if many:
            parameters = [compiled.parameters(row) for row in params]
        else:
            parameters = compiled.parameters(params)
        cursor = None
        try:
            cursor = connection.connection.cursor()
            if many:
                cursor.executemany(compiled.sql, parameters)
            else:
                cursor.execute(compiled.sql, parameters)
        except Exception as exc:
            if cursor is not None:
                cursor.close()
            raise_as_sqlalchemy(connection, exc, compiled.sql, parameters, cursor)
        return Result(cursor, compiled)


def raise_as_sqlalchemy(
    connection: Connection, exc: Exception, sql: str, parameters: Any, cursor: Any
) -> NoReturn:
    """Raise a driver's error as SQLAlchemy would: wrapped (``DBAPIError``: callers map
    it to a 4xx or a 503), and a lost connection invalidated so the pool drops it."""
    connection._handle_dbapi_exception(exc, sql, parameters, cursor, None)


class Result:
    """The rows of one execution (read them before the next statement on the connection)."""

    def __init__(self, cursor: Any, compiled: _Compiled) -> None:
        self._cursor = cursor
        self._compiled = compiled

    @property
    def rowcount(self) -> int:
        count = int(self._cursor.rowcount)
        self.close()
        return count

    def close(self) -> None:
        self._cursor.close()

    def first(self) -> tuple[Any, ...] | None:
        raw = self._cursor.fetchone()
        rows = [] if raw is None else self._compiled.rows(self._cursor, [raw])
        self.close()
        return rows[0] if rows else None

    def first_mapping(self) -> dict[str, Any] | None:
        """The first row as ``{column name: value}``, e.g. to build a model from."""
        row = self.first()
        return None if row is None else dict(zip(self._compiled.keys, row, strict=True))

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def all(self) -> list[tuple[Any, ...]]:
        rows = self._compiled.rows(self._cursor, self._cursor.fetchall())
        self.close()
        return rows

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.all()]
