"""Every look's bounds, per gate, kept (thinned) for plots of a rollout's evidence.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "look_bounds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("n_baseline", sa.Integer, nullable=False),
        sa.Column("n_canary", sa.Integer, nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("blocking", sa.Boolean, nullable=False),
        sa.Column("estimate", sa.Float),
        sa.Column("low", sa.Float),
        sa.Column("high", sa.Float),
        sa.Column("threshold", sa.Float),
    )
    op.create_index("ix_look_bounds_rollout", "look_bounds", ["rollout_id", "step_index", "seq"])


def downgrade() -> None:
    op.drop_table("look_bounds")
