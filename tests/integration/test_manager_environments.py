"""Environment order, artifact digests, approvals and rollbacks, on SQLite and PostgreSQL.

Each test runs against the real MLflow registry of the ``home`` fixture and a store given by
``store_url`` (a SQLite file, then a fresh PostgreSQL database).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from conftest import MODEL, DemoHome, LogWriter, logged
from rollout.environments import Environment
from rollout.errors import NotFound, RegistryError, StateError
from rollout.manager import Manager
from rollout.registry import DIGEST_TAG
from rollout.spec import SloErrorRate, SloSpec, load_spec

# all traffic at once, nothing judged (not even the SLO at 100%): promoted at the first tick
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
WRONG_DIGEST = "sha256:" + "0" * 64


@pytest.fixture
def manager(home: DemoHome, store_url: str) -> Iterator[Manager]:
    manager = Manager(replace(home.settings, store_url=store_url))
    yield manager
    manager.close()


def test_a_version_enters_prod_only_after_it_succeeded_in_staging(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "staging", actor="alice")
    manager.start(MODEL, v1, "prod", actor="alice")
    with pytest.raises(StateError, match=f"bc v{v2} has not succeeded in staging"):
        manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    assert [r.version for r in manager.history(MODEL, "prod")] == [v1]
    manager.start(MODEL, v2, "staging", load_spec(INSTANT), actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    assert manager.rollout(rollout_id).state == "succeeded"
    assert manager.registry.alias_version(MODEL, "prod") == v2
    assert manager.registry.alias_version(MODEL, "staging") == v2


def test_the_next_environment_needs_the_same_artifact(manager: Manager, home: DemoHome) -> None:
    v1 = home.versions["baseline"]
    manager.start(MODEL, v1, "staging", actor="alice")
    recorded = manager.history(MODEL, "staging")[0].artifact_digest
    manager.registry.client.set_model_version_tag(MODEL, v1, DIGEST_TAG, WRONG_DIGEST)
    with pytest.raises(RegistryError) as raised:
        manager.start(MODEL, v1, "prod", actor="alice")
    assert str(raised.value) == (
        f"bc v{v1}: artifact digest {WRONG_DIGEST} differs from the one that succeeded in "
        f"staging ({recorded})"
    )
    assert manager.plans.get("prod", MODEL) is None


def test_a_changed_artifact_stops_the_rollout_before_traffic(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    manager.registry.record_digest(MODEL, v2)
    manager.registry.client.set_model_version_tag(MODEL, v2, DIGEST_TAG, WRONG_DIGEST)
    rollout_id = manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    record = manager.rollout(rollout_id)
    assert record.state == "aborted"
    assert record.reason is not None
    assert record.reason.startswith(
        f"verification failed: artifact of bc v{v2} changed since registration: "
        f"recorded {WRONG_DIGEST}, now sha256:"
    )
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    assert manager.registry.alias_version(MODEL, "prod") == v1
    release = manager.history(MODEL, "prod")[0]
    assert (release.version, release.outcome) == (v2, "aborted")
    # The initial release of a changed artifact is refused outright.
    with pytest.raises(RegistryError, match="changed since registration"):
        manager.start(MODEL, v2, "staging", actor="alice")


def test_prod_approval_must_come_from_another_identity(home: DemoHome, store_url: str) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    prod = Environment("prod", approval_required=True, distinct_approver=True)
    manager = Manager(
        replace(home.settings, store_url=store_url), environments=["dev", "staging", prod]
    )
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    status = manager.status(MODEL, "prod")
    assert status.rollout is not None and status.rollout.state == "awaiting_approval"
    assert status.next_move == "waiting for approval by someone other than alice"
    with pytest.raises(StateError, match="must come from someone other than alice"):
        manager.approve(MODEL, "prod", actor="alice")
    with pytest.raises(StateError, match="must come from someone other than alice"):
        manager.promote(MODEL, "prod", actor="alice")
    record = manager.approve(MODEL, "prod", actor="bob")
    assert (record.id, record.state, record.approved_by) == (rollout_id, "succeeded", "bob")
    release = manager.history(MODEL, "prod")[0]
    assert (release.kind, release.started_by, release.approved_by) == ("promotion", "alice", "bob")
    manager.close()


def test_dev_allows_self_approval(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "dev", actor="alice")
    spec = load_spec({**INSTANT, "approval": {"required": True}})
    manager.start(MODEL, v2, "dev", spec, actor="alice")
    record = manager.approve(MODEL, "dev", actor="alice")
    assert (record.state, record.approved_by) == ("succeeded", "alice")


def test_waiting_for_approval_times_out_into_a_rollback(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    spec = load_spec({**INSTANT, "approval": {"required": True, "timeout": "10m"}})
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    assert manager.rollout(rollout_id).state == "awaiting_approval"
    assert manager.tick(time.time() + 60) == []
    moves = manager.tick(time.time() + 601)
    assert [(d.event, d.to_state) for d in moves] == [
        ("approval_expired", "rolling_back"),
        ("reverted", "rolled_back"),
    ]
    assert moves[0].reason == "no approval within 600s; rolling back"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    assert manager.registry.alias_version(MODEL, "prod") == v1
    assert manager.history(MODEL, "prod")[0].outcome == "rolled_back"


def test_rollback_to_any_earlier_release_is_a_release(manager: Manager, home: DemoHome) -> None:
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    first = manager.start(MODEL, v1, "prod", actor="alice")
    manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    manager.start(MODEL, v3, "prod", load_spec(INSTANT), actor="alice")
    assert manager.registry.alias_version(MODEL, "prod") == v3
    initial = next(r for r in manager.history(MODEL, "prod") if r.rollout_id == first)
    assert initial.id is not None
    generation = manager.plans.get("prod", MODEL)
    release = manager.rollback(MODEL, "prod", actor="carol", to_release=initial.id)
    assert (release.kind, release.version, release.previous_version) == ("rollback", v1, v3)
    assert release.evidence is not None and release.evidence["to_release"] == initial.id
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and generation is not None
    assert (plan.baseline_version, plan.generation) == (v1, generation.generation + 1)
    assert manager.registry.alias_version(MODEL, "prod") == v1
    # Without --to: back to the newest earlier release serving another version (v3).
    again = manager.rollback(MODEL, "prod", actor="carol")
    assert (again.version, again.previous_version) == (v3, v1)
    with pytest.raises(NotFound, match="is not a release of bc in prod"):
        manager.rollback(MODEL, "prod", actor="carol", to_release=10**6)


def test_an_environment_gives_the_slo_of_a_spec_without_one(home: DemoHome, store_url: str) -> None:
    """prod holds a candidate alone to at most 1% failed requests (the default allows 5%): 12
    failed of 400 is proven above it; a spec's own SLO wins over the environment's."""
    v1, v2 = home.versions["baseline"], home.versions["better"]
    prod = Environment("prod", slo=SloSpec(error_rate=SloErrorRate(max=0.01)))
    manager = Manager(replace(home.settings, store_url=store_url), environments=[prod])
    alone = {"strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 10}]}}}
    own = {**alone, "analysis": {"slo": {"error_rate": {"max": 0.2}}}}
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        for spec, state in ((own, "promoting"), (alone, "rolling_back")):
            rollout_id = manager.start(MODEL, v2, "prod", load_spec(spec), actor="alice")
            LogWriter(manager.engine).write(
                [
                    logged(
                        rollout_id, "canary", v2, 1, error="ModelError: boom" if i < 12 else None
                    )
                    for i in range(400)
                ]
            )
            moved = manager.tick()[0]  # the step's decision (a promotion may follow it)
            assert moved.to_state == state, moved.reason
            gates = {g.gate: g for g in moved.evidence.gates} if moved.evidence else {}
            assert gates["slo_error_rate"].threshold == (0.2 if spec is own else 0.01)
            if state == "promoting":
                manager.tick()
                assert manager.rollout(rollout_id).state == "succeeded"
                manager.rollback(MODEL, "prod", actor="alice", reason="again")  # v1 serves
            else:
                assert manager.rollout(rollout_id).state == "rolled_back"
    finally:
        manager.close()
