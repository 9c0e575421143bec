"""Traffic plans name the release serving their baseline (``baseline_release_id``).

Existing plans are filled in from the release records: the newest release that succeeded with
the plan's baseline version in its (environment, model); NULL when there is none. Their
generation does not change, so a router already running sees the id from the next plan change
(or restart) on.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("traffic_plans", sa.Column("baseline_release_id", sa.Integer))
    op.execute(
        "UPDATE traffic_plans SET baseline_release_id = ("
        " SELECT MAX(releases.id) FROM releases"
        " WHERE releases.model = traffic_plans.model"
        " AND releases.environment = traffic_plans.environment"
        " AND releases.version = traffic_plans.baseline_version"
        " AND releases.outcome = 'succeeded')"
    )


def downgrade() -> None:
    with op.batch_alter_table("traffic_plans") as batch:  # SQLite rebuilds the table
        batch.drop_column("baseline_release_id")
