"""Dashboard sessions in the store, so that every API process knows them and a restart keeps
them (:mod:`rollout.web.sessions`).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
    )
    op.create_index("ix_dashboard_sessions_used", "dashboard_sessions", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_used", "dashboard_sessions")
    op.drop_table("dashboard_sessions")
