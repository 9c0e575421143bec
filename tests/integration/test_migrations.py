"""Alembic migrations: the migrated schema equals ``contract.sql.schema``; stores created
before migrations are adopted; concurrent openers migrate once (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from contract.sql.engine import normalize_url, open_engine
from contract.sql.migrations import BASELINE, HEAD, current_revision, upgrade
from contract.sql.plans import SqlPlanStore
from contract.sql.schema import metadata, releases, rollout_configs


def test_migrated_schema_equals_the_tables(store_url: str) -> None:
    engine = open_engine(store_url)
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    engine.dispose()


def test_head_is_the_newest_revision() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import contract.sql.migrations as migrations

    config = Config()
    config.set_main_option("script_location", str(migrations._HERE))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_store_from_before_migrations_is_adopted(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, BASELINE)  # the tables create_all made before migrations existed ...
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # ... and no revision stamped
        assert set(inspect(conn).get_table_names()) == {
            "traffic_plans", "predictions", "feedback", "rollouts", "rollout_events", "releases",
        }  # fmt: skip
        conn.execute(
            releases.insert().values(
                model="bc", environment="prod", version="1", kind="initial",
                started_by="alice", started_at=1.0, outcome="succeeded",
            )
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        assert conn.execute(select(releases.c.version)).scalars().all() == ["1"]
        assert conn.execute(select(rollout_configs)).all() == []
    engine.dispose()


def test_0004_names_the_release_serving_each_plan_baseline(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, "0003")

    def release(version: str, outcome: str) -> None:
        conn.execute(
            releases.insert().values(
                model="bc", environment="prod", version=version, kind="promotion",
                started_by="alice", started_at=1.0, outcome=outcome,
            )
        )  # fmt: skip

    with engine.begin() as conn:
        release("1", "succeeded")  # id 1
        release("2", "succeeded")  # id 2
        release("1", "succeeded")  # id 3: back to v1
        release("1", "rolled_back")  # id 4: not what serves v1
        for env, baseline in (("prod", "1"), ("staging", "1"), ("prod-eu", "7")):
            conn.execute(
                text(
                    "INSERT INTO traffic_plans (environment, model, baseline_version, "
                    "canary_weight_pct, shadow_fraction, generation, updated_at) "
                    "VALUES (:env, 'bc', :baseline, 0, 0.0, 5, 1.0)"
                ),
                {"env": env, "baseline": baseline},
            )
    upgrade(engine)
    found = {plan.environment: plan for plan in SqlPlanStore(engine).list()}
    assert {env: plan.baseline_release_id for env, plan in found.items()} == {
        "prod": 3,
        "prod-eu": None,  # no release of v7
        "staging": None,  # releases of v1 are in prod only
    }
    assert {plan.generation for plan in found.values()} == {5}
    engine.dispose()


def test_concurrent_openers_migrate_once(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_engine(store_url).dispose()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = open_engine(store_url)
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
    engine.dispose()


def test_0009_keeps_existing_labels_unattributed_and_adds_their_history(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO feedback (request_id, label, ts) VALUES ('old', '1', 5.0)"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT request_id, label, ts, writer FROM feedback")).all() == [
            ("old", "1", 5.0, None)
        ]
        assert conn.execute(text("SELECT count(*) FROM feedback_history")).scalar_one() == 0
    engine.dispose()
