"""Alembic migrations: the migrated schema equals ``rollout.store.schema``; stores created
before migrations are adopted; concurrent openers migrate once (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from rollout.migrations import HEAD, current_revision, upgrade
from rollout.store.engine import normalize_url, open_engine
from rollout.store.schema import metadata, releases, rollout_configs


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

    import rollout.migrations as migrations

    config = Config()
    config.set_main_option("script_location", str(migrations._HERE))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_store_from_before_migrations_is_adopted(store_url: str) -> None:
    engine = create_engine(normalize_url(store_url))
    before_alembic = ("traffic_plans", "predictions", "feedback", "rollouts", "rollout_events",
                      "releases")  # fmt: skip
    old_tables = [metadata.tables[name] for name in before_alembic]
    metadata.create_all(engine, tables=old_tables)
    with engine.begin() as conn:
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
