"""The router's least-privilege database role (PostgreSQL).

When a role named ``rollout_router`` exists (``deploy/postgres-init.sql`` creates it), it may
read the traffic plans and write prediction records and labels, and nothing else: no rollouts,
releases, plans to write, audit log or lease. SQLite has no roles: nothing to do there.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op

from contract.sql.engine import ROUTER_ROLE

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The grants as of this revision (later revisions grant what their tables need).
ROUTER_GRANTS = (
    "GRANT SELECT ON traffic_plans, alembic_version",
    "GRANT INSERT, SELECT (id) ON predictions",
    "GRANT USAGE ON SEQUENCE predictions_id_seq",
    "GRANT SELECT, INSERT, UPDATE (label, ts) ON feedback",
)


def upgrade() -> None:
    _if_router_role(f"{grant} TO {ROUTER_ROLE};" for grant in ROUTER_GRANTS)


def downgrade() -> None:
    _if_router_role(
        f"{grant.replace('GRANT', 'REVOKE', 1)} FROM {ROUTER_ROLE};" for grant in ROUTER_GRANTS
    )


def _if_router_role(statements: Iterable[str]) -> None:
    """Run `statements` on PostgreSQL when the router's role exists (SQLite has no roles)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROUTER_ROLE}') "
        f"THEN {' '.join(statements)} END IF; END $$"
    )
