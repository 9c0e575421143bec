"""Traffic plans and the prediction log on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import time

import pytest

from rollout.store import (
    Feedback,
    PredictionLog,
    PredictionRecord,
    TrafficPlan,
    TrafficPlanStore,
    open_engine,
)


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
    plans = TrafficPlanStore(open_engine(store_url))
    first = plans.put(TrafficPlan("prod", "bc", "1", "2", 10, rollout_id="r1"))
    second = plans.put(TrafficPlan("prod", "bc", "1", "2", 50, rollout_id="r1"))
    assert (first.generation, second.generation) == (1, 2)
    stored = plans.get("prod", "bc")
    assert stored == second
    assert stored is not None and stored.canary_weight_pct == 50
    assert plans.get("staging", "bc") is None
    plans.engine.dispose()


def test_list_filters_by_environment(store_url: str) -> None:
    plans = TrafficPlanStore(open_engine(store_url))
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


def test_arm_samples_join_labels_and_count_errors(store_url: str) -> None:
    log = PredictionLog(open_engine(store_url))
    log.write(
        [
            _record("a", "baseline", 1),
            _record("b", "baseline", 0),
            _record("c", "canary", 1),
            _record("d", "canary", None, error="boom"),
        ]
    )
    log.add_feedback([Feedback("a", 1, time.time()), Feedback("c", 0, time.time())])
    log.add_feedback([Feedback("c", 1, time.time())])  # a later label replaces the first
    samples = log.arm_samples("r1")
    assert samples["baseline"].n_requests == 2
    assert samples["baseline"].outputs == [1, 0]
    assert samples["baseline"].labelled == [(1, 1)]
    assert samples["canary"].n_errors == 1
    assert samples["canary"].labelled == [(1, 1)]
    assert log.count("r1") == {"baseline": 2, "canary": 2}
    assert log.count("r1", since_ts=time.time() + 60) == {}
    log.engine.dispose()
