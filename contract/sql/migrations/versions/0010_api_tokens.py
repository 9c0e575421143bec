"""The API's tokens with a lifecycle (``rollout token create|list|revoke``): hashes only.

Revision ID: 0010
Revises: 0008 (0009 is another change of the same issue; the chain is joined when both land)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("identity", sa.String(255), nullable=False),
        sa.Column("roles", sa.String(255), nullable=False),
        sa.Column("environments", sa.Text),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_by", sa.String(255)),
        sa.Column("last_used_at", sa.Float),
        sa.UniqueConstraint("token_sha256", name="uq_api_tokens_sha256"),
    )
    op.create_index("ix_api_tokens_identity", "api_tokens", ["identity"])


def downgrade() -> None:
    op.drop_table("api_tokens")
