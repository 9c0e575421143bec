"""Open the store by URL and bring its schema up to date (Alembic, :mod:`contract.sql.migrations`).

``sqlite:///path.db`` (the embedded default) gets WAL journaling and a busy timeout so a router
and a manager in different processes can share the file; ``postgresql://`` URLs use psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from contract.sql.migrations import upgrade


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


# The router's database identity on PostgreSQL (docs/architecture.md, "The store"): it reads
# traffic plans and writes prediction records and labels, nothing else. Migration 0006 grants
# these when the role exists; run them by hand (as the store's owner) for a role created later.
ROUTER_ROLE = "rollout_router"
ROUTER_GRANTS = (
    "GRANT SELECT ON traffic_plans, alembic_version",
    "GRANT INSERT, SELECT (id) ON predictions",  # SELECT (id): INSERT ... RETURNING id
    "GRANT USAGE ON SEQUENCE predictions_id_seq",
    "GRANT SELECT, INSERT, UPDATE (label, ts) ON feedback",  # an upsert reads the row it updates
    # migration 0009: a label replaced by its writer keeps its old value here
    "GRANT INSERT, SELECT (id) ON feedback_history",
    "GRANT USAGE ON SEQUENCE feedback_history_id_seq",
)


def open_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``; with ``create`` the schema is migrated to the newest revision."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if create:
        upgrade(engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
