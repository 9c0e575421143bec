"""The store as created before migrations: plans, predictions, feedback, rollouts, events,
releases.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ACTIVE_ROLLOUT = "state NOT IN ('succeeded', 'rolled_back', 'aborted')"


def upgrade() -> None:
    op.create_table(
        "traffic_plans",
        sa.Column("environment", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("baseline_version", sa.String(32), nullable=False),
        sa.Column("canary_version", sa.String(32)),
        sa.Column("canary_weight_pct", sa.Integer, nullable=False),
        sa.Column("shadow_version", sa.String(32)),
        sa.Column("shadow_fraction", sa.Float, nullable=False),
        sa.Column("sticky_key", sa.String(255)),
        sa.Column("rollout_id", sa.String(64)),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("arm", sa.String(16), nullable=False),
        sa.Column("rollout_id", sa.String(64)),
        sa.Column("plan_generation", sa.Integer, nullable=False),
        sa.Column("features", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("status_code", sa.Integer, nullable=False),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_rollout", "predictions", ["rollout_id", "arm", "ts"])
    op.create_index("ix_predictions_model_ts", "predictions", ["environment", "model", "ts"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("baseline_version", sa.String(32)),
        sa.Column("candidate_version", sa.String(32), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("step_started_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("row_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_rollouts_model_env", "rollouts", ["environment", "model", "state"])
    op.create_index(
        "ux_rollouts_active",
        "rollouts",
        ["environment", "model"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE_ROLLOUT),
        postgresql_where=sa.text(_ACTIVE_ROLLOUT),
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("from_state", sa.String(32)),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("step_index", sa.Integer),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text),
    )
    op.create_index("ix_rollout_events_rollout", "rollout_events", ["rollout_id", "id"])
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("previous_version", sa.String(32)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("artifact_digest", sa.String(80)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("config_hash", sa.String(64)),
        sa.Column("rollout_id", sa.String(64)),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("evidence", sa.Text),
    )
    op.create_index("ix_releases_model_env", "releases", ["environment", "model", "id"])


def downgrade() -> None:
    for table in (
        "releases",
        "rollout_events",
        "rollouts",
        "feedback",
        "predictions",
        "traffic_plans",
    ):
        op.drop_table(table)
