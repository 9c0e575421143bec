"""Labels you can trust: who wrote each label, and the labels a writer replaced.

``feedback.writer`` names the label writer (a digest of its token) that stored the label; rows
stored before this revision have none and can no longer be replaced. ``feedback_history`` keeps
every label its writer replaced. The router's role (0006) may insert history rows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op

from contract.sql.engine import ROUTER_ROLE

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

GRANTS = (
    "GRANT INSERT, SELECT (id) ON feedback_history",
    "GRANT USAGE ON SEQUENCE feedback_history_id_seq",
)


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("writer", sa.String(64)))
    op.create_table(
        "feedback_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("writer", sa.String(64)),
        sa.Column("replaced_at", sa.Float, nullable=False),
    )
    op.create_index("ix_feedback_history_request_id", "feedback_history", ["request_id"])
    _if_router_role(f"{grant} TO {ROUTER_ROLE};" for grant in GRANTS)


def downgrade() -> None:
    op.drop_table("feedback_history")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("writer")


def _if_router_role(statements: Iterable[str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    joined = " ".join(statements)
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROUTER_ROLE}') "
        f"THEN {joined} END IF; END $$"
    )
