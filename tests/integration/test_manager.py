"""Manager behaviour on the real registry: approvals, environment order, pause/resume, status,
candidate aliases, spec binding and the run loop (SQLite store of the ``home`` fixture)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import MODEL, DemoHome
from rollout.errors import RegistryError, SpecError, StateError
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store import PredictionRecord

# One 100% step with no minimum: judged as soon as it starts (no baseline, gates not run).
INSTANT = {"strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}}}
TEN_PCT = load_spec(
    {
        "strategy": {"canary": {"steps": [{"weight": 10, "min_requests": 50}, {"weight": 100}]}},
        "analysis": {"gates": ["error_rate", "latency"]},
    }
)


@pytest.fixture
def manager(home: DemoHome) -> Iterator[Manager]:
    manager = Manager(home.settings)
    yield manager
    manager.close()


def write(manager: Manager, rollout_id: str, arm: str, n: int, version: str) -> None:
    manager.predictions.write(
        [
            PredictionRecord(
                request_id=uuid.uuid4().hex,
                ts=time.time(),
                environment="prod",
                model=MODEL,
                version=version,
                arm=arm,
                rollout_id=rollout_id,
                plan_generation=1,
                features=None,
                output=json.dumps([1]),
                latency_ms=10.0 + (i % 7),
                error=None,
                status_code=200,
            )
            for i in range(n)
        ]
    )


def test_approval_must_come_from_someone_else(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    spec = load_spec({**INSTANT, "approval": {"required": True}})
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    assert manager.rollout(rollout_id).state == "awaiting_approval"
    with pytest.raises(StateError, match="someone other than alice"):
        manager.approve(MODEL, "prod", actor="alice")
    with pytest.raises(StateError, match="someone other than alice"):
        manager.promote(MODEL, "prod", actor="alice")
    record = manager.approve(MODEL, "prod", actor="bob")
    assert (record.state, record.approved_by) == ("succeeded", "bob")
    release = manager.history(MODEL, "prod")[0]
    assert (release.version, release.started_by, release.approved_by) == (v2, "alice", "bob")
    assert manager.registry.alias_version(MODEL, "prod") == v2


def test_a_version_enters_prod_only_after_staging(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "staging", actor="alice")
    manager.start(MODEL, v1, "prod", actor="alice")  # v1 succeeded in staging
    with pytest.raises(StateError, match="has not succeeded in staging, the environment before"):
        manager.start(MODEL, v2, "prod", actor="alice")
    manager.start(MODEL, v2, "staging", load_spec(INSTANT), actor="alice")
    assert manager.registry.alias_version(MODEL, "staging") == v2
    rollout_id = manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
    assert manager.rollout(rollout_id).state == "succeeded"
    # Environments outside the order (and dev, the first) are not constrained.
    manager.start(MODEL, v2, "sandbox", actor="alice")
    manager.start(MODEL, v2, "dev", actor="alice")


def test_candidate_alias_and_spec_binding(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    manager.registry.set_alias(MODEL, "challenger", v2)
    with pytest.raises(SpecError, match="environment: the spec says 'staging'"):
        manager.start(
            MODEL, "@challenger", "prod", load_spec({**INSTANT, "environment": "staging"})
        )
    with pytest.raises(RegistryError, match="not found"):
        manager.start(MODEL, "@nobody", "prod", actor="alice")
    with pytest.raises(StateError, match=f"v{v1} is already serving in prod"):
        manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, "@challenger", "prod", TEN_PCT, actor="alice")
    record = manager.rollout(rollout_id)
    assert (record.candidate_version, record.baseline_version) == (v2, v1)
    assert json.loads(record.spec)["candidate"] == "@challenger"


def test_inconclusive_pauses_and_resume_restarts_the_step(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", TEN_PCT, actor="alice")
    write(manager, rollout_id, "canary", 60, v2)
    write(manager, rollout_id, "baseline", 40, v1)  # error_rate needs 100 per arm
    (paused,) = manager.tick()
    assert (paused.event, paused.to_state) == ("inconclusive", "paused")
    assert "too little data" in paused.reason
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.canary_weight_pct == 10  # pausing keeps the traffic

    assert manager.tick() == []  # paused stays paused
    before = manager.rollout(rollout_id).step_started_at
    record = manager.resume(MODEL, "prod", actor="bob")
    assert record.state == "progressing"
    assert record.step_started_at is not None and before is not None
    assert record.step_started_at > before
    assert manager.tick() == []  # the old requests no longer count

    record = manager.abort(MODEL, "prod", actor="bob", reason="changed my mind")
    assert record.state == "aborted"
    assert record.reason == "aborted by bob: changed my mind"
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    with pytest.raises(StateError, match="has no active rollout in prod"):
        manager.pause(MODEL, "prod", actor="bob")


def test_status_shows_plan_alias_rollout_and_live_evidence(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    empty = manager.status(MODEL, "prod")
    assert (empty.plan, empty.alias_version, empty.rollout) == (None, None, None)

    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", TEN_PCT, actor="alice")
    write(manager, rollout_id, "canary", 20, v2)
    status = manager.status(MODEL, "prod")
    assert status.alias_version == v1
    assert status.plan is not None and status.plan.canary_weight_pct == 10
    assert status.rollout is not None and status.rollout.id == rollout_id
    assert status.live is not None and status.live.n_canary == 20
    assert [g.gate for g in status.live.gates] == ["error_rate", "latency"]
    assert status.next_move is not None and "20/50 canary requests" in status.next_move
    assert [e.to_state for e in status.events] == ["pending", "verifying", "progressing"]
    json.dumps(status.to_dict(), allow_nan=False)


def test_run_loop_drives_rollouts_until_stopped(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", TEN_PCT, actor="alice")
    stop = threading.Event()
    loop = threading.Thread(target=manager.run, kwargs={"interval_s": 0.05, "stop_event": stop})
    loop.start()
    try:
        write(manager, rollout_id, "baseline", 400, v1)
        write(manager, rollout_id, "canary", 100, v2)
        deadline = time.time() + 10
        while manager.rollout(rollout_id).step_index == 0 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=5)
    assert not loop.is_alive()
    record = manager.rollout(rollout_id)
    # Step 2 is 100% with min_requests 100 and no traffic yet: it waits there.
    assert (record.state, record.step_index) == ("progressing", 1)
