"""The first window's feature rows a serving version's inputs are compared with (when its model
has no training reference), kept so that retention pruning them changes no comparison
(:mod:`rollout.degradation`).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "input_references",
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("input_references")
