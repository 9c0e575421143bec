"""The keyed audit chain: each row's caller address and user agent, the number of denials it
stands for, and its hash algorithm (rows written before this revision are ``sha256``; the first
keyed append seals them with an ``hmac-sha256`` checkpoint row, :mod:`rollout.store.audit`).

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("address", sa.String(64)))
        batch.add_column(sa.Column("user_agent", sa.String(255)))
        batch.add_column(sa.Column("count", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("alg", sa.String(16), nullable=False, server_default="sha256"))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("alg")
        batch.drop_column("count")
        batch.drop_column("user_agent")
        batch.drop_column("address")
