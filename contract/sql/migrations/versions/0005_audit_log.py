"""The audit log: one hash-chained row per mutating API call, allowed or denied.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("identity", sa.String(255), nullable=False),
        sa.Column("verb", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255)),
        sa.Column("environment", sa.String(64)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
    )
    op.create_index("ix_audit_log_model_env", "audit_log", ["environment", "model", "id"])
    op.create_index("ix_audit_log_identity", "audit_log", ["identity", "id"])


def downgrade() -> None:
    op.drop_table("audit_log")
