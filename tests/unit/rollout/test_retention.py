"""Retention of the prediction log, on SQLite and PostgreSQL: what is deleted, what is kept."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import LogWriter, wait_until
from contract.clock import ManualClock
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from contract.sql.schema import feedback, feedback_history, predictions
from rollout.environments import Environment, load_environments
from rollout.errors import SpecError
from rollout.manager import Manager
from rollout.settings import Settings
from rollout.store.retention import DAY_S, Retention, RetentionPolicy

NOW = 1_800_000_000.0


def rows(
    n: int,
    *,
    age_days: float,
    environment: str = "prod",
    rollout_id: str | None = None,
    at: int = 0,
) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            request_id=f"{environment}-{rollout_id}-{age_days}-{at + i}",
            ts=NOW - age_days * DAY_S + i * 1e-3,
            environment=environment,
            model="bc",
            version="1",
            arm="baseline",
            rollout_id=rollout_id,
            plan_generation=1,
            features='[{"x": 1.0}]',
            output="[1]",
            latency_ms=5.0,
            error=None,
            status_code=200,
        )
        for i in range(n)
    ]


def kept(engine: object, **where: object) -> list[str]:
    query = select(predictions.c.request_id).order_by(predictions.c.id)
    for name, value in where.items():
        query = query.where(predictions.c[name] == value)
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return [row[0] for row in conn.execute(query)]


def retention(
    engine: object,
    policies: dict[str, RetentionPolicy],
    active: Sequence[str] = (),
    batch: int = 7,
) -> Retention:
    return Retention(engine, lambda: policies.items(), lambda: active, batch=batch)  # type: ignore[arg-type]


def test_rows_older_than_days_go_with_their_labels_in_batches(store_url: str) -> None:
    engine = open_engine(store_url)
    writer = LogWriter(engine)
    old, young = rows(20, age_days=15), rows(10, age_days=13)
    writer.write(old + young + rows(5, age_days=30, environment="dev"))
    writer.add_feedback([Feedback(r.request_id, 1, ts=NOW - DAY_S) for r in old[:8] + young[:3]])
    # Corrections by their writer: the replaced labels go with their requests' rows.
    writer.add_feedback([Feedback(r.request_id, 0, ts=NOW) for r in (old[0], young[0])])
    pruned = retention(engine, {"prod": RetentionPolicy(days=14)}).prune(NOW)
    assert (pruned.rows, pruned.labels, pruned.done) == (20, 8, True)
    assert pruned.batches == 3  # 7 + 7 + 6
    assert kept(engine, environment="prod") == [r.request_id for r in young]
    assert len(kept(engine, environment="dev")) == 5  # dev has no retention
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(feedback)).scalar_one() == 3
        history = conn.execute(select(feedback_history.c.request_id)).scalars().all()
        assert history == [young[0].request_id]
    again = retention(engine, {"prod": RetentionPolicy(days=14)}).prune(NOW)
    assert (again.rows, again.batches, again.done) == (0, 0, True)
    engine.dispose()


def test_max_rows_keeps_the_newest_and_an_active_rollout_keeps_its_window(
    store_url: str,
) -> None:
    engine = open_engine(store_url)
    writer = LogWriter(engine)
    judged = rows(6, age_days=40, rollout_id="r-active")
    finished = rows(6, age_days=40, rollout_id="r-done", at=100)
    newest = rows(10, age_days=1)
    writer.write(judged + finished + newest)
    policy = {"prod": RetentionPolicy(days=30, max_rows=12)}
    pruned = retention(engine, policy, active=["r-active"]).prune(NOW)
    assert pruned.rows == 6  # the finished rollout's old rows; the active one's stay
    assert kept(engine) == [r.request_id for r in judged + newest]
    capped = retention(engine, {"prod": RetentionPolicy(max_rows=4)}).prune(NOW)
    assert capped.rows == 12 and kept(engine) == [r.request_id for r in newest[-4:]]
    engine.dispose()


def test_a_budget_stops_a_long_prune_and_the_next_pass_goes_on(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    LogWriter(engine).write(rows(50, age_days=20))
    ticks = iter(range(1000))
    slow = Retention(
        engine,
        lambda: {"prod": RetentionPolicy(days=14)}.items(),
        lambda: (),
        batch=10,
        clock=lambda: float(next(ticks)),  # every reading one second later
    )
    first = slow.prune(NOW, budget_s=2.0)
    assert (first.done, first.rows) == (False, 20)
    second = slow.prune(NOW, budget_s=100.0)
    assert (second.done, second.rows) == (True, 30)
    assert kept(engine) == []
    engine.dispose()


def test_environments_file_sets_retention_and_names_a_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(
        "environments:\n  - dev\n  - {name: prod, retention: {days: 14, max_rows: 1000}}\n"
    )
    envs = load_environments(path)
    assert envs.get("prod").retention == RetentionPolicy(days=14.0, max_rows=1000)
    assert not envs.get("dev").retention.bounded
    path.write_text("environments: [{name: prod, retention: {days: 0}}]\n")
    with pytest.raises(SpecError, match=r"environments\[0\]\.retention\.days"):
        load_environments(path)


def test_the_manager_holding_the_lease_prunes_while_it_runs(tmp_path: Path) -> None:
    """The loop's pass: a manager that runs (and holds the store's lease) deletes the rows due
    under its environments' retention, at its first tick."""

    settings = Settings.resolve(home=tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    manager = Manager(
        settings,
        environments=[Environment("prod", retention=RetentionPolicy(days=14))],
        clock=ManualClock(NOW),
    )
    LogWriter(manager.engine).write(rows(30, age_days=20) + rows(5, age_days=1))
    stop = threading.Event()
    runner = threading.Thread(target=manager.run, kwargs={"interval_s": 0.05, "stop_event": stop})
    runner.start()
    try:
        wait_until(lambda: len(kept(manager.engine)), "the old rows to go", until=lambda n: n == 5)
    finally:
        stop.set()
        runner.join(timeout=10)
        manager.close()
