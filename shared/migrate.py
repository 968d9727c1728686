"""Migrations on start: under a lock, and refusing a database newer than the code.

Processes that start together (API and workers) migrate once: PostgreSQL
serialises them on an advisory lock, SQLite on a file lock beside the file.
Alembic is configured here in code, so it never reconfigures logging.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db import Database
from shared.errors import BobbinError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ADVISORY_LOCK_ID = 0x0B0BB1  # any constant shared by every Bobbin process


class DatabaseNewerThanCode(BobbinError):
    code = "database_newer_than_code"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(db: Database) -> None:
    """Bring the schema to the code's head revision; raises DatabaseNewerThanCode."""
    with _migration_lock(db), db.engine.connect() as connection:
        config = _config(connection)
        script = ScriptDirectory.from_config(config)
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and script.get_revision(current) is None:
            raise DatabaseNewerThanCode(
                f"the database is at migration {current}, which this version of Bobbin does "
                "not know: upgrade Bobbin before starting it on this database"
            )
        command.upgrade(config, "head")
        connection.commit()


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    if db.is_sqlite:
        path = db.url.split("sqlite:///", 1)[1] or "bobbin"
        with open(f"{path}.migrate.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
            conn.commit()
