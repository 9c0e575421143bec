"""Traffic plans and the prediction log on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import time

import pytest

from conftest import LogWriter
from contract.plans import TrafficPlan
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from rollout.store.predictions import PredictionLog


def _record(
    request_id: str, arm: str, output: object, *, error: str | None = None
) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        ts=time.time(),
        environment="prod",
        model="bc",
        version="2" if arm == "canary" else "1",
        arm=arm,
        rollout_id="r1",
        plan_generation=1,
        features="[[1.0, 2.0]]",
        output=None if error else f"[{output}]",
        latency_ms=2.5,
        error=error,
        status_code=500 if error else 200,
    )


def test_put_bumps_generation_and_round_trips(store_url: str) -> None:
    plans = SqlPlanStore(open_engine(store_url))
    first = plans.put(TrafficPlan("prod", "bc", "1", "2", 10, rollout_id="r1"))
    second = plans.put(TrafficPlan("prod", "bc", "1", "2", 50, rollout_id="r1"))
    assert (first.generation, second.generation) == (1, 2)
    stored = plans.get("prod", "bc")
    assert stored == second
    assert stored is not None and stored.canary_weight_pct == 50
    assert plans.get("staging", "bc") is None
    plans.engine.dispose()


def test_the_baseline_release_round_trips(store_url: str) -> None:
    plans = SqlPlanStore(open_engine(store_url))
    plans.put(TrafficPlan("prod", "bc", "1", "2", 10, rollout_id="r1", baseline_release_id=41))
    stored = plans.get("prod", "bc")
    assert stored is not None and stored.baseline_release_id == 41
    plans.put(TrafficPlan("prod", "bc", "2"))  # a plan that does not know it
    cleared = plans.get("prod", "bc")
    assert cleared is not None and cleared.baseline_release_id is None
    plans.engine.dispose()


def test_each_version_names_its_release() -> None:
    plan = TrafficPlan("prod", "bc", "1", "2", 10, rollout_id="r7", baseline_release_id=3)
    assert [plan.release_of(v) for v in ("1", "2", "9")] == ["3", "rollout:r7", None]
    assert plan.canary_release == "rollout:r7"
    shadow = TrafficPlan("prod", "bc", "1", shadow_version="2", shadow_fraction=0.5,
                         rollout_id="r8")  # fmt: skip
    assert (shadow.release_of("1"), shadow.release_of("2")) == (None, "rollout:r8")
    alone = TrafficPlan("prod", "bc", "1", baseline_release_id=3)
    assert (alone.canary_release, alone.release_of("1")) == (None, "3")
    no_rollout = TrafficPlan("prod", "bc", "1", "2", 10)
    assert (no_rollout.canary_release, no_rollout.release_of("2")) == (None, None)


def test_list_filters_by_environment(store_url: str) -> None:
    plans = SqlPlanStore(open_engine(store_url))
    plans.put(TrafficPlan("prod", "bc", "1"))
    plans.put(TrafficPlan("staging", "bc", "2"))
    assert [p.environment for p in plans.list()] == ["prod", "staging"]
    assert [p.baseline_version for p in plans.list("staging")] == ["2"]
    plans.engine.dispose()


def test_plan_rejects_impossible_weights() -> None:
    with pytest.raises(ValueError, match="canary_weight_pct"):
        TrafficPlan("prod", "bc", "1", "2", 101)
    with pytest.raises(ValueError, match="needs a canary_version"):
        TrafficPlan("prod", "bc", "1", None, 5)
    assert TrafficPlan("prod", "bc", "1", "2", 5, shadow_version="3").versions == ("1", "2", "3")


def test_a_window_folds_labels_and_counts_errors(store_url: str) -> None:
    engine = open_engine(store_url)
    log, writer = PredictionLog(engine), LogWriter(engine)
    writer.write(
        [
            _record("a", "baseline", 1),
            _record("b", "baseline", 0),
            _record("c", "canary", 1),
            _record("d", "canary", None, error="boom"),
        ]
    )
    writer.add_feedback([Feedback("a", 1, time.time()), Feedback("c", 0, time.time())])
    writer.add_feedback([Feedback("c", 1, time.time())])  # a later label replaces the first
    summary = log.fold("r1", since_ts=0.0)
    baseline, canary = summary.counts("baseline"), summary.counts("canary")
    assert (baseline.n_requests, baseline.n_errors, baseline.versions) == (2, 0, {"1"})
    assert (canary.n_requests, canary.n_errors, canary.versions) == (2, 1, {"2"})
    assert summary.outputs.categories.counts == {"baseline": {"1": 1, "0": 1}, "canary": {"1": 1}}
    assert summary.labels.labelled == {"baseline": 1, "canary": 1}
    assert summary.labels.correct == {"baseline": 1, "canary": 1}  # c's label was replaced by 1
    assert log.count("r1") == {"baseline": 2, "canary": 2}
    assert log.count("r1", since_ts=time.time() + 60) == {}
    log.engine.dispose()
