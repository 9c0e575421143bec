"""A finished rollout's sample of its judged window, kept for its dashboard page after the
prediction rows are pruned (:mod:`rollout.web.sample`).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_samples",
        sa.Column("rollout_id", sa.String(64), primary_key=True),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.Column("since_ts", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollout_samples")
