"""Strategy details on the manager with prediction records written as a router would:
a shadow rollout that continues as a canary, and a blue/green preview judged by time only."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import MODEL, DemoHome
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store import PredictionRecord


@pytest.fixture
def manager(home: DemoHome) -> Iterator[Manager]:
    manager = Manager(home.settings)
    yield manager
    manager.close()


def mirrored(manager: Manager, rollout_id: str, outputs: list[tuple[int, int]], v: str) -> None:
    """One baseline record and its shadow twin (same request id) per (baseline, shadow) pair."""
    now = time.time()
    records = []
    for baseline_output, shadow_output in outputs:
        request_id = uuid.uuid4().hex
        for arm, output in (("baseline", baseline_output), ("shadow", shadow_output)):
            records.append(
                PredictionRecord(
                    request_id=request_id,
                    ts=now,
                    environment="prod",
                    model=MODEL,
                    version=v,
                    arm=arm,
                    rollout_id=rollout_id,
                    plan_generation=1,
                    features=None,
                    output=json.dumps([output]),
                    latency_ms=5.0,
                    error=None,
                    status_code=200,
                )
            )
    manager.predictions.write(records)


def test_shadow_then_canary_continues_with_the_canary_steps(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    spec = load_spec(
        {
            "strategy": {
                "shadow": {
                    "fraction": 0.5,
                    "min_requests": 50,
                    "max_disagreement": 0.1,
                    "then": "canary",
                    "canary": {"steps": [{"weight": 25, "min_requests": 1000}]},
                }
            },
            "analysis": {"gates": ["error_rate"]},
        }
    )
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.shadow_version, plan.shadow_fraction, plan.canary_weight_pct) == (v2, 0.5, 0)
    mirrored(manager, rollout_id, [(1, 1)] * 30, v1)
    assert manager.tick() == []  # 30/50 pairs
    assert "30/50 canary requests" in (manager.status(MODEL, "prod").next_move or "")
    mirrored(manager, rollout_id, [(1, 1)] * 58 + [(1, 0)] * 2, v1)
    (moved,) = manager.tick()
    assert (moved.event, moved.step_index) == ("step_passed", 1)
    assert moved.reason.startswith("step 1/2 (0%) passed (shadow disagrees with baseline on")
    assert "recommendation: continue as a canary" in moved.reason
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.canary_version, plan.canary_weight_pct, plan.shadow_version) == (v2, 25, None)


def test_blue_green_preview_passes_on_time_alone(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    spec = load_spec({"strategy": {"blue_green": {"preview": "1m", "bake": "5m"}}})
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    assert manager.tick(time.time() + 30) == []
    (switched,) = manager.tick(time.time() + 61)
    assert (switched.event, switched.step_index) == ("step_passed", 1)
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (v1, v2, 100)
    assert manager.rollout(rollout_id).state == "progressing"
