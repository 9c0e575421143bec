"""Whole rollouts on the real MLflow registry and SQLite / PostgreSQL stores.

Prediction records are written into the store as a router would (one per request, with delayed
labels), then the manager ticks: a good canary walks 10% → 50% → 100% and is promoted (alias,
plan, release record with lineage); a bad one is rolled back with its evidence stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from conftest import MODEL, DemoHome, LogWriter, logged
from contract.records import Feedback
from rollout.errors import ConflictError, NotFound, StateError
from rollout.lifecycle import Command
from rollout.machine import decide
from rollout.manager import Manager
from rollout.registry import DIGEST_TAG
from rollout.spec import RolloutSpec, config_hash, load_spec
from rollout.stored import machine_state

SPEC = load_spec(
    {
        "strategy": {
            "canary": {
                "steps": [
                    {"weight": 10, "min_requests": 100},
                    {"weight": 50, "min_requests": 100},
                    {"weight": 100, "min_requests": 50},
                ]
            }
        },
        # Margins loose enough to decide on hundreds of requests (the benchmark measures the
        # defaults on tens of thousands): errors at most 5 points more, median latency at most
        # 1.5x, a class mix at most 0.2 apart (total variation), accuracy at most 15 points lower.
        "analysis": {
            "gates": [
                {"error_rate": {"max_increase": 0.05}},
                {"latency": {"quantile": 0.5, "max_ratio": 1.5}},
                {"output_drift": {"method": "auto", "delta": 0.2}},
                {"quality": {"metric": "accuracy", "max_decrease": 0.15}},
            ]
        },
    }
)


@pytest.fixture
def manager(home: DemoHome, store_url: str) -> Iterator[Manager]:
    manager = Manager(replace(home.settings, store_url=store_url))
    yield manager
    manager.close()


def feed(
    manager: Manager,
    rollout_id: str,
    arm: str,
    n: int,
    *,
    version: str,
    error_rate: float = 0.0,
    accuracy: float = 0.95,
    positive_rate: float = 0.6,
    seed: int = 0,
) -> None:
    """``n`` requests served by ``arm``, each with one predicted row and its label."""
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for _ in range(n):
        request_id = uuid.uuid4().hex
        failed = bool(rng.random() < error_rate)
        output = int(rng.random() < positive_rate)
        records.append(
            logged(
                rollout_id,
                arm,
                version,
                output,
                latency_ms=float(rng.gamma(4.0, 2.5)),
                error="boom" if failed else None,
                request_id=request_id,
            )
        )
        if not failed:
            correct = rng.random() < accuracy
            labels.append(Feedback(request_id, output if correct else 1 - output, time.time()))
    writer = LogWriter(manager.engine)
    writer.write(records)
    writer.add_feedback(labels)


def feed_split(
    manager: Manager,
    rollout_id: str,
    n_baseline: int,
    n_canary: int,
    *,
    versions: tuple[str, str],
    baseline: dict[str, float] | None = None,
    canary: dict[str, float] | None = None,
    seed: int = 0,
) -> None:
    """Both arms' requests interleaved in ten rounds, as a router serves a split: labels
    arrive in an order unrelated to the arm, which the quality gate's estimate relies on."""
    for i in range(10):
        for arm, n, version, options in (
            ("baseline", n_baseline, versions[0], baseline or {}),
            ("canary", n_canary, versions[1], canary or {}),
        ):
            feed(
                manager,
                rollout_id,
                arm,
                n // 10,
                version=version,
                seed=seed + 2 * i + (arm == "canary"),
                **options,
            )  # type: ignore[arg-type]


def release_baseline(manager: Manager, home: DemoHome) -> None:
    rollout_id = manager.start(MODEL, home.versions["baseline"], "prod", actor="alice")
    assert manager.rollout(rollout_id).state == "succeeded"


def test_start_without_baseline_is_an_initial_release(manager: Manager, home: DemoHome) -> None:
    v1 = home.versions["baseline"]
    rollout_id = manager.start(MODEL, v1, "prod", actor="alice")
    record = manager.rollout(rollout_id)
    assert (record.state, record.baseline_version, record.candidate_version) == (
        "succeeded",
        None,
        v1,
    )
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (v1, None, 0)
    assert manager.registry.alias_version(MODEL, "prod") == v1
    (release,) = manager.history(MODEL, "prod")
    assert (release.kind, release.version, release.outcome) == ("initial", v1, "succeeded")
    assert release.artifact_digest == manager.registry.resolve(MODEL, v1).digest
    assert release.artifact_digest is not None and release.artifact_digest.startswith("sha256:")
    assert release.run_id and release.config_hash == record.config_hash
    assert [e.to_state for e in manager.events(rollout_id)] == ["succeeded"]


def test_good_canary_is_promoted(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    release_baseline(manager, home)
    rollout_id = manager.start(MODEL, v2, "prod", SPEC, actor="alice")

    record = manager.rollout(rollout_id)
    assert (record.state, record.step_index, record.baseline_version) == ("progressing", 0, v1)
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (v1, v2, 10)
    assert plan.rollout_id == rollout_id

    # Not enough canary requests yet: nothing moves.
    feed(manager, rollout_id, "canary", 30, version=v2, seed=1)
    assert manager.tick() == []

    feed_split(
        manager, rollout_id, 2000, 500, versions=(v1, v2), baseline={"accuracy": 0.9}, seed=2
    )
    (moved,) = manager.tick()
    assert (moved.event, moved.to_state) == ("step_passed", "progressing")
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.canary_weight_pct == 50

    feed_split(
        manager, rollout_id, 300, 300, versions=(v1, v2), baseline={"accuracy": 0.9}, seed=40
    )
    (moved,) = manager.tick()
    assert moved.event == "step_passed"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.canary_weight_pct == 100

    feed(manager, rollout_id, "canary", 60, version=v2, seed=6)
    moves = manager.tick()
    assert [(d.event, d.to_state) for d in moves] == [
        ("steps_passed", "promoting"),
        ("promoted", "succeeded"),
    ]

    assert manager.rollout(rollout_id).state == "succeeded"
    assert manager.registry.alias_version(MODEL, "prod") == v2
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.rollout_id) == (v2, None, None)

    promotion = manager.history(MODEL, "prod")[0]
    info = manager.registry.resolve(MODEL, v2)
    assert (promotion.kind, promotion.version, promotion.previous_version) == ("promotion", v2, v1)
    assert promotion.outcome == "succeeded"
    assert promotion.artifact_digest == info.digest
    assert promotion.run_id == info.run_id
    assert promotion.git_commit == info.git_commit
    assert promotion.config_hash == config_hash(manager_spec(manager, rollout_id))
    assert promotion.started_by == "alice"
    assert promotion.evidence is not None
    steps = promotion.evidence["steps"]
    assert [s["weight_pct"] for s in steps] == [10, 50, 100]
    assert [g["gate"] for g in steps[0]["gates"]] == [
        "error_rate",
        "latency",
        "output_drift",
        "quality",
    ]
    assert {g["verdict"] for g in steps[0]["gates"]} == {"pass"}

    states = [(e.from_state, e.to_state) for e in manager.events(rollout_id)]
    assert states == [
        (None, "pending"),
        ("pending", "verifying"),
        ("verifying", "progressing"),
        ("progressing", "progressing"),
        ("progressing", "progressing"),
        ("progressing", "promoting"),
        ("promoting", "succeeded"),
    ]
    # Ticking again (or a restarted manager) never promotes twice.
    assert manager.tick() == []
    assert len(manager.history(MODEL, "prod")) == 2


def manager_spec(manager: Manager, rollout_id: str) -> RolloutSpec:
    return RolloutSpec.model_validate_json(manager.rollout(rollout_id).spec)


def test_bad_canary_is_rolled_back_with_evidence(manager: Manager, home: DemoHome) -> None:
    v1, v3 = home.versions["baseline"], home.versions["broken"]
    release_baseline(manager, home)
    rollout_id = manager.start(MODEL, v3, "prod", SPEC, actor="alice")
    feed_split(
        manager,
        rollout_id,
        2000,
        500,
        versions=(v1, v3),
        baseline={"accuracy": 0.9},
        canary={"error_rate": 0.15, "accuracy": 0.5, "positive_rate": 0.2},
        seed=2,
    )
    moves = manager.tick()
    assert [(d.event, d.to_state) for d in moves] == [
        ("gates_failed", "rolling_back"),
        ("reverted", "rolled_back"),
    ]
    assert manager.rollout(rollout_id).state == "rolled_back"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (v1, None, 0)
    assert manager.registry.alias_version(MODEL, "prod") == v1

    failed = next(e for e in manager.events(rollout_id) if e.to_state == "rolling_back")
    assert failed.evidence is not None
    verdicts = {g["gate"]: g["verdict"] for g in failed.evidence["gates"]}
    assert verdicts["error_rate"] == "fail"
    assert verdicts["quality"] == "fail"
    assert verdicts["output_drift"] == "fail"
    error_gate = failed.evidence["gates"][0]
    assert error_gate["test"] == "rate_ratio+difference"
    assert error_gate["ci_low"] > 0.05  # the difference proven beyond the 5-point margin
    assert error_gate["details"]["ratio_low"] > 1.5  # and the ratio beyond 1.5x
    assert (error_gate["n_baseline"], error_gate["n_canary"]) == (2000, 500)
    assert "error_rate fail" in failed.reason

    attempt = manager.history(MODEL, "prod")[0]
    assert (attempt.kind, attempt.version, attempt.outcome) == ("rollback", v3, "rolled_back")
    assert attempt.evidence is not None and attempt.evidence["steps"][0]["verdict"] == "fail"


def test_rollback_to_previous_and_to_a_given_release(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    release_baseline(manager, home)
    manager.start(MODEL, v2, "prod", SPEC, actor="alice")
    manager.promote(MODEL, "prod", actor="alice")
    assert manager.registry.alias_version(MODEL, "prod") == v2
    initial, promotion = reversed(manager.history(MODEL, "prod"))

    back = manager.rollback(MODEL, "prod", actor="bob")
    assert (back.kind, back.version, back.previous_version) == ("rollback", v1, v2)
    assert back.artifact_digest == initial.artifact_digest
    assert manager.registry.alias_version(MODEL, "prod") == v1
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)

    assert promotion.id is not None
    forward = manager.rollback(MODEL, "prod", actor="bob", to_release=promotion.id)
    assert (forward.kind, forward.version, forward.previous_version) == ("rollback", v2, v1)
    assert manager.registry.alias_version(MODEL, "prod") == v2
    assert [r.kind for r in manager.history(MODEL, "prod")] == [
        "rollback",
        "rollback",
        "promotion",
        "initial",
    ]

    with pytest.raises(StateError, match="already serving"):
        manager.rollback(MODEL, "prod", actor="bob", to_release=promotion.id)
    with pytest.raises(NotFound, match="is not a release of bc in prod"):
        manager.rollback(MODEL, "prod", actor="bob", to_release=9999)


def test_rollback_of_an_active_rollout(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    release_baseline(manager, home)
    rollout_id = manager.start(MODEL, v2, "prod", SPEC, actor="alice")
    with pytest.raises(StateError, match="is active"):
        manager.rollback(MODEL, "prod", actor="bob", to_release=1)
    release = manager.rollback(MODEL, "prod", actor="bob", reason="pager went off")
    assert (release.outcome, release.rollout_id, release.version) == ("rolled_back", rollout_id, v2)
    assert manager.rollout(rollout_id).state == "rolled_back"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    reasons = [e.reason for e in manager.events(rollout_id)]
    assert "rollback requested by bob: pager went off" in reasons


def test_stale_write_conflicts(manager: Manager, home: DemoHome) -> None:
    release_baseline(manager, home)
    rollout_id = manager.start(MODEL, home.versions["better"], "prod", SPEC, actor="alice")
    stale = manager.rollout(rollout_id)
    manager.pause(MODEL, "prod", actor="bob")  # someone else writes first

    state = machine_state(stale, manager.environments.get("prod"))
    decision = decide(state, None, time.time(), Command("abort", "carol"))
    with pytest.raises(ConflictError, match=f"rollout {rollout_id} was changed by someone else"):
        manager.applier.save(stale, decision, time.time())
    record = manager.rollout(rollout_id)
    assert (record.state, record.row_version) == ("paused", stale.row_version + 1)
    assert [e.to_state for e in manager.events(rollout_id)][-1] == "paused"


def test_second_active_rollout_is_refused(manager: Manager, home: DemoHome) -> None:
    release_baseline(manager, home)
    first = manager.start(MODEL, home.versions["better"], "prod", SPEC, actor="alice")
    with pytest.raises(StateError, match=f"already has rollout {first}"):
        manager.start(MODEL, home.versions["broken"], "prod", SPEC, actor="alice")

    # Even a writer that skipped the check is stopped by the store.
    duplicate = replace(manager.rollout(first), id="r-duplicate", state="pending")
    with (
        pytest.raises(ConflictError, match="already has an active rollout in prod"),
        manager.engine.begin() as conn,
    ):
        manager.records.create(conn, duplicate)


def test_changed_artifact_aborts_before_traffic(manager: Manager, home: DemoHome) -> None:
    release_baseline(manager, home)
    v2 = home.versions["better"]
    manager.registry.client.set_model_version_tag(MODEL, v2, DIGEST_TAG, "sha256:" + "0" * 64)
    rollout_id = manager.start(MODEL, v2, "prod", SPEC, actor="alice")
    record = manager.rollout(rollout_id)
    assert record.state == "aborted"
    assert "changed since registration" in (record.reason or "")
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.canary_version is None
    attempt = manager.history(MODEL, "prod")[0]
    assert (attempt.version, attempt.outcome) == (v2, "aborted")
