"""Alembic environment: runs the revisions on the connection :func:`contract.sql.migrations.upgrade`
passes in ``config.attributes["connection"]`` (online only; no offline SQL generation)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through contract.sql.migrations.upgrade(engine)")
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
