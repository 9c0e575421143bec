"""The store's schema, managed by Alembic: ``upgrade(engine)`` brings any store to ``HEAD``.

Revisions live in ``versions/`` (``0001`` is the schema as it was before Alembic, so a store
created by the old ``create_all`` is stamped ``0001`` and then upgraded). Every process that
opens the store calls :func:`upgrade` (``open_engine``), so it is safe to run concurrently: on
PostgreSQL an advisory transaction lock serialises it, on SQLite a file lock beside the
database file. When the store is already at ``HEAD`` it costs one query and imports nothing.

To change the schema: edit :mod:`contract.sql.schema`, add a revision under ``versions/``
(``alembic -c <generated config> revision`` or by hand, as here) and move ``HEAD``;
``tests/integration/test_migrations.py`` checks the migrated schema equals the tables.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

HEAD = "0014"
BASELINE = "0001"  # the tables created by create_all before migrations existed
_PG_LOCK_KEY = 7_405_100_501  # pg_advisory_xact_lock key for migrations
_HERE = Path(__file__).parent


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row is not None else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the store to ``revision`` (default: the newest), creating it if empty."""
    # On SQLite even the first look happens under the file lock: the first connection to a new
    # file switches it to WAL, which fails ("database is locked") while another connection is
    # creating the tables.
    with _file_lock(engine):
        if revision == "head":
            with engine.connect() as conn:
                if current_revision(conn) == HEAD:
                    return
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            _run(conn, revision)


def _run(conn: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = conn
    if current_revision(conn) is None and inspect(conn).has_table("rollouts"):
        command.stamp(config, BASELINE)  # created before migrations existed
    command.upgrade(config, revision)


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` for SQLite files; else nothing."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["BASELINE", "HEAD", "current_revision", "upgrade"]
