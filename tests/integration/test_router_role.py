"""The router's least-privilege PostgreSQL login: reads plans, writes records and labels only."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from conftest import PG_ADMIN_URL
from contract.plans import TrafficPlan
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import ROUTER_ROLE, open_engine
from contract.sql.plans import SqlPlanStore
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink
from contract.sql.schema import rollouts
from rollout.store.audit import AuditLog
from router.config import RouterConfig


def as_router(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{ROUTER_ROLE}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def router_url(postgres_url: str) -> str:
    """A store migrated by its owner after the router's role exists (as compose does it)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROUTER_ROLE}') "
            f"THEN CREATE ROLE {ROUTER_ROLE} LOGIN; END IF; END $$"
        )
    owner = open_engine(postgres_url)  # migrates: 0006 grants the router its rights
    SqlPlanStore(owner).put(TrafficPlan("prod", "bc", "1", "2", 10, rollout_id="r1"))
    owner.dispose()
    return as_router(postgres_url)


def record(request_id: str) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, ts=time.time(), environment="prod", model="bc", version="1",
        arm="baseline", rollout_id="r1", plan_generation=1, features="[[1.0]]", output="[1]",
        latency_ms=2.0, error=None, status_code=200,
    )  # fmt: skip


def test_the_router_role_reads_plans_and_writes_records_and_labels(
    router_url: str, postgres_url: str
) -> None:
    engine = open_engine(router_url, create=False)
    try:
        (plan,) = SqlPlanStore(engine).list("prod")
        assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (
            "1",
            "2",
            10,
        )
        SqlPredictionSink(engine).write([record("a"), record("b")])  # the router's own writers
        labels = SqlFeedbackSink(engine)
        labels.add_feedback([Feedback("a", 1, time.time())])
        labels.add_feedback([Feedback("a", 0, time.time())])  # its writer's correction
    finally:
        engine.dispose()
    owner = open_engine(postgres_url, create=False)
    with owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar_one() == 2
        assert conn.execute(text("SELECT label FROM feedback")).scalar_one() == "0"
        assert conn.execute(text("SELECT label FROM feedback_history")).scalar_one() == "1"
    owner.dispose()


@pytest.mark.parametrize(
    "attempt",
    ["write a plan", "read rollouts", "append to the audit log", "delete records", "migrate"],
)
def test_the_router_role_may_do_nothing_else(router_url: str, attempt: str) -> None:
    engine = open_engine(router_url, create=False)
    try:
        with pytest.raises(ProgrammingError, match="permission denied"):
            if attempt == "write a plan":
                SqlPlanStore(engine).put(TrafficPlan("prod", "bc", "2"))
            elif attempt == "read rollouts":
                with engine.connect() as conn:
                    conn.execute(select(rollouts)).all()
            elif attempt == "append to the audit log":
                AuditLog(engine, b"k" * 32).append("router", "start", "bc", "prod", "allowed", 200)
            elif attempt == "delete records":
                with engine.begin() as conn:
                    conn.execute(text("DELETE FROM predictions"))
            else:
                with engine.begin() as conn:
                    conn.execute(text("CREATE TABLE sneaky (id int)"))
    finally:
        engine.dispose()


def test_the_router_opens_the_store_without_migrating_when_told(router_url: str) -> None:
    config = RouterConfig.from_env({"ROLLOUT_STORE_URL": router_url, "ROLLOUT_MIGRATE_STORE": "0"})
    assert (
        config.migrate_store is False
        and RouterConfig.from_env({"ROLLOUT_STORE_URL": router_url}).migrate_store
    )
    with pytest.raises(ValueError, match="ROLLOUT_MIGRATE_STORE='maybe'"):
        RouterConfig.from_env({"ROLLOUT_STORE_URL": router_url, "ROLLOUT_MIGRATE_STORE": "maybe"})
