"""Strategy details on the manager with prediction records written as a router would:
a shadow rollout that continues as a canary, and a blue/green preview judged by time only."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import MODEL, DemoHome, LogWriter, logged
from contract.records import Feedback
from rollout.manager import Manager
from rollout.spec import load_spec


@pytest.fixture
def manager(home: DemoHome) -> Iterator[Manager]:
    manager = Manager(home.settings)
    yield manager
    manager.close()


def mirrored(manager: Manager, rollout_id: str, outputs: list[tuple[int, int]], v: str) -> None:
    """One baseline record and its shadow twin (same request id) per (baseline, shadow) pair."""
    records = []
    for baseline_output, shadow_output in outputs:
        request_id = uuid.uuid4().hex
        for arm, output in (("baseline", baseline_output), ("shadow", shadow_output)):
            records.append(logged(rollout_id, arm, v, output, request_id=request_id))
    LogWriter(manager.engine).write(records)


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
    # 2 of 230 pairs differ: the rate is proven below the 10% allowed
    mirrored(manager, rollout_id, [(1, 1)] * 198 + [(1, 0)] * 2, v1)
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


def served(
    manager: Manager, rollout_id: str, arm: str, version: str, n: int, *, errors: int = 0
) -> None:
    """`n` requests answered by `version` on `arm`, the first `errors` of them failed."""
    LogWriter(manager.engine).write(
        [
            logged(rollout_id, arm, version, 1, error="ModelError: boom" if i < errors else None)
            for i in range(n)
        ]
    )


def blue_green(manager: Manager, home: DemoHome, **options: object) -> tuple[str, str, str]:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    spec = load_spec(
        {
            "strategy": {"blue_green": {"preview": "1s", "bake": "5m", **options}},
            # loose enough to decide on 80 pinned requests: at most 10 points more errors
            "analysis": {"gates": [{"error_rate": {"max_increase": 0.1}}]},
        }
    )
    manager.start(MODEL, v1, "prod", actor="alice")
    return v1, v2, manager.start(MODEL, v2, "prod", spec, actor="alice")


def test_blue_green_preview_waits_for_pinned_requests_and_judges_them(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2, rollout_id = blue_green(manager, home, preview_requests=60)
    served(manager, rollout_id, "baseline", v1, 400)
    served(manager, rollout_id, "pinned", v2, 20)
    served(manager, rollout_id, "pinned", "999", 50)  # pinned to another version: not counted
    assert manager.tick(time.time() + 5) == []
    assert "20/60 canary requests" in (manager.status(MODEL, "prod").next_move or "")
    served(manager, rollout_id, "pinned", v2, 60)
    (switched,) = manager.tick(time.time() + 5)
    assert (switched.event, switched.step_index) == ("step_passed", 1)
    assert switched.evidence is not None and switched.evidence.n_canary == 80
    (gate,) = switched.evidence.gates
    assert (gate.gate, gate.verdict, gate.n_baseline, gate.n_canary) == (
        "error_rate",
        "pass",
        400,
        80,
    )
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.canary_version, plan.canary_weight_pct) == (v2, 100)


@pytest.mark.parametrize("preview_requests", [0, 60])
def test_blue_green_preview_that_fails_its_gates_never_switches(
    manager: Manager, home: DemoHome, preview_requests: int
) -> None:
    v1, v2, rollout_id = blue_green(manager, home, preview_requests=preview_requests)
    served(manager, rollout_id, "baseline", v1, 400)
    served(manager, rollout_id, "pinned", v2, 80, errors=24)  # 30% of pinned requests fail
    failed, *_ = manager.tick(time.time() + 5)
    assert failed.event == "gates_failed"
    assert "error_rate" in failed.reason and "canary 30.000%" in failed.reason
    manager.tick(time.time() + 6)
    assert manager.rollout(rollout_id).state == "rolled_back"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (v1, None, 0)
    assert all(e.to_state != "progressing" or e.step_index != 1 for e in manager.events(rollout_id))


def test_a_shadow_less_accurate_on_the_same_labelled_requests_is_rolled_back(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    spec = load_spec(
        {
            "strategy": {"shadow": {"min_requests": 50, "test": "mcnemar", "max_decrease": 0.05}},
            "analysis": {"gates": ["error_rate"]},
        }
    )
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    records, labels = [], []
    for i in range(300):  # the baseline is right on every request, the shadow on 70%
        request_id = uuid.uuid4().hex
        for arm, output in (("baseline", 1), ("shadow", 0 if i % 10 < 3 else 1)):
            records.append(logged(rollout_id, arm, v1, output, request_id=request_id))
        labels.append(Feedback(request_id, 1, time.time()))
    writer = LogWriter(manager.engine)
    writer.write(records)
    assert manager.tick() == []  # no labels yet: nothing to judge
    assert "shadow accuracy not decided yet" in str(manager.status(MODEL, "prod").next_move)
    writer.add_feedback(labels)
    moves = manager.tick()
    assert [m.to_state for m in moves][-1] == "rolled_back"
    rolled = next(m for m in moves if m.evidence is not None)
    assert "shadow proven less accurate than allowed" in rolled.reason
    assert "-30.00 pts" in rolled.reason and "allowed 5.00 pts lower" in rolled.reason
