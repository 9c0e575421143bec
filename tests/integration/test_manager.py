"""Manager behaviour on the real registry: approvals, environment order, pause/resume, status,
candidate aliases, spec binding, the run loop (SQLite store of the ``home`` fixture), and the
release each plan names, as a router on that store reports it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import MODEL, DemoHome, LogWriter, logged
from rollout.environments import UnknownEnvironment
from rollout.errors import NoActiveRollout, RegistryError, SpecError, StateError
from rollout.lifecycle import RolloutState
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store.records import RolloutRecord
from router.app import create_app
from router.config import RouterConfig

# One 100% step with no minimum: judged as soon as it starts (no baseline, gates not run).
# all traffic at once, nothing judged (not even the SLO at 100%): promoted at the first tick
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
# Margins loose enough to decide on a hundred requests: the canary may err 10 points more, and
# its median latency may be twice the baseline's.
TEN_PCT = load_spec(
    {
        "strategy": {
            "canary": {
                "steps": [
                    {"weight": 10, "min_requests": 50, "max_requests": 60},
                    {"weight": 100},
                ]
            }
        },
        "analysis": {
            "gates": [
                {"error_rate": {"max_increase": 0.1}},
                {"latency": {"quantile": 0.5, "max_ratio": 2.0}},
            ]
        },
    }
)


@pytest.fixture
def manager(home: DemoHome) -> Iterator[Manager]:
    manager = Manager(home.settings)
    yield manager
    manager.close()


def write(manager: Manager, rollout_id: str, arm: str, n: int, version: str) -> None:
    LogWriter(manager.engine).write(
        [logged(rollout_id, arm, version, 1, latency_ms=10.0 + (i % 7)) for i in range(n)]
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
    # dev, the first, is not constrained; an environment outside the order is refused.
    manager.start(MODEL, v2, "dev", actor="alice")
    with pytest.raises(UnknownEnvironment, match="'sandbox' is not a configured environment"):
        manager.start(MODEL, v2, "sandbox", actor="alice")


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
    write(manager, rollout_id, "baseline", 40, v1)  # 0 errors in 60 cannot yet prove < 10%
    (paused,) = manager.tick()
    assert (paused.event, paused.to_state) == ("inconclusive", "paused")
    assert "undecided at max_requests 60" in paused.reason
    assert "error rate not decided yet" in paused.reason
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
    with pytest.raises(NoActiveRollout, match="has no active rollout in prod"):
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
    assert (
        status.expected is not None and "canary requests in the rollout to pass" in status.expected
    )
    assert "20 so far" in status.expected
    assert [e.to_state for e in status.events] == ["pending", "verifying", "progressing"]
    json.dumps(status.to_dict(), allow_nan=False)


def test_run_loop_drives_rollouts_until_stopped(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", TEN_PCT, actor="alice")
    # Logged before the loop starts, so they precede its first tick and so step 2's window.
    write(manager, rollout_id, "baseline", 400, v1)
    write(manager, rollout_id, "canary", 100, v2)
    stop = threading.Event()
    loop = threading.Thread(target=manager.run, kwargs={"interval_s": 0.05, "stop_event": stop})
    loop.start()
    try:
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


@contextmanager
def serving_router(home: DemoHome) -> Iterator[httpx.Client]:
    """A router app on the home's store and registry, served by uvicorn on loopback."""
    config = RouterConfig(
        store_url=home.settings.store_url,
        registry_uri=home.settings.registry_uri,
        artifact_root=home.settings.artifact_root,
        environment="prod",
        plan_poll_s=0.05,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = sock.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def served_by(manager: Manager, client: httpx.Client, body: object) -> httpx.Response:
    """The router's reply to ``body`` once it applies the manager's newest plan."""
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    deadline = time.monotonic() + 60
    while not any(
        m["generation"] == plan.generation for m in client.get("/v1/models").json()["models"]
    ):
        assert time.monotonic() < deadline, f"the router did not apply generation {plan.generation}"
        time.sleep(0.05)
    reply = client.post(f"/v1/models/{MODEL}/invocations", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-plan-generation"] == str(plan.generation)
    return reply


def test_plans_and_replies_name_the_release_serving_them(manager: Manager, home: DemoHome) -> None:
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    body = {"dataframe_split": home.data.serve_X.head(1).to_dict(orient="split", index=False)}
    waits = load_spec({"strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 10**6}]}}})

    manager.start(MODEL, v1, "prod", actor="alice")
    (initial,) = manager.history(MODEL, "prod")
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (initial.kind, plan.baseline_release_id) == ("initial", initial.id)
    with serving_router(home) as client:
        reply = served_by(manager, client, body)
        assert (reply.headers["x-arm"], reply.headers["x-release-id"]) == (
            "baseline",
            str(initial.id),
        )

        # A canary answers for its rollout; promoting it makes its release the baseline's.
        canary_id = manager.start(MODEL, v2, "prod", waits, actor="alice")
        reply = served_by(manager, client, body)
        assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == ("canary", v2)
        assert reply.headers["x-release-id"] == f"rollout:{canary_id}"
        manager.promote(MODEL, "prod", actor="bob")
        promotion = manager.history(MODEL, "prod")[0]
        assert (promotion.kind, promotion.version, promotion.outcome) == (
            "promotion",
            v2,
            "succeeded",
        )
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v2, None)
        assert plan.baseline_release_id == promotion.id != initial.id
        reply = served_by(manager, client, body)
        assert (reply.headers["x-model-version"], reply.headers["x-release-id"]) == (
            v2,
            str(promotion.id),
        )

        # A rolled-back canary is recorded as a rollback; the baseline keeps its release.
        broken_id = manager.start(MODEL, v3, "prod", waits, actor="alice")
        assert served_by(manager, client, body).headers["x-release-id"] == f"rollout:{broken_id}"
        rolled_back = manager.rollback(MODEL, "prod", actor="bob")
        assert (rolled_back.kind, rolled_back.version, rolled_back.outcome) == (
            "rollback",
            v3,
            "rolled_back",
        )
        assert rolled_back.rollout_id == broken_id
        reply = served_by(manager, client, body)
        assert (reply.headers["x-model-version"], reply.headers["x-release-id"]) == (
            v2,
            str(promotion.id),
        )

        # Returning to an earlier release is a new release, and the plan names it.
        back = manager.rollback(MODEL, "prod", actor="bob")
        assert (back.kind, back.version, back.outcome) == ("rollback", v1, "succeeded")
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and plan.baseline_release_id == back.id
        assert back.id not in (initial.id, promotion.id, rolled_back.id)
        reply = served_by(manager, client, body)
        assert (reply.headers["x-model-version"], reply.headers["x-release-id"]) == (
            v1,
            str(back.id),
        )
        metrics = client.get("/metrics").text
        assert (
            f'rollout_router_requests_total{{arm="baseline",model="{MODEL}",'
            f'release="{back.id}",status="200",version="{v1}"}} 1.0'
        ) in metrics


def test_start_while_a_running_manager_moves_the_rollout_first(home: DemoHome) -> None:
    """`rollout start` drives the new rollout once; if the manager loop (another process in
    production; another Manager on the same store here) saves a move first, start still
    succeeds and the rollout goes on from the loop's move."""
    loop = Manager(home.settings)
    starter = Manager(home.settings)
    look, raced = starter.evidence.look, []

    def racing_look(record: RolloutRecord, state: RolloutState, now: float) -> Any:
        if not raced and state.state == "pending" and state.baseline_version is not None:
            raced.append(True)
            loop.tick(now)  # the loop moves pending → verifying → ... before we save
        return look(record, state, now)

    starter.evidence.look = racing_look  # type: ignore[method-assign]
    try:
        v1, v2 = home.versions["baseline"], home.versions["better"]
        starter.start(MODEL, v1, "prod", actor="alice")
        rollout_id = starter.start(MODEL, v2, "prod", actor="alice")
        assert raced
        events = [(e.from_state, e.to_state) for e in starter.events(rollout_id)]
        assert events[:3] == [
            (None, "pending"),
            ("pending", "verifying"),
            ("verifying", "progressing"),
        ]
        assert [e.actor for e in starter.events(rollout_id)].count("alice") == 1  # no double move
        assert starter.rollout(rollout_id).state == "progressing"
    finally:
        starter.close()
        loop.close()


def test_a_command_whose_rollout_the_loop_finishes_first_still_succeeds(home: DemoHome) -> None:
    """`rollout rollback` saves its move; if the manager loop then finishes the rollback while
    the command is about to save its own next move, the command reports the recorded release
    (it used to retry, find no active rollout, and fail although the rollback happened)."""
    loop = Manager(home.settings)
    racing = Manager(home.settings)
    look, raced = racing.evidence.look, []

    def racing_look(record: RolloutRecord, state: RolloutState, now: float) -> Any:
        if state.state == "rolling_back" and not raced:
            raced.append(True)  # between our read of the rollout and our save:
            loop.tick(now)  # the loop moves rolling_back → rolled_back first
        return look(record, state, now)

    racing.evidence.look = racing_look  # type: ignore[method-assign]
    try:
        v1, v2 = home.versions["baseline"], home.versions["better"]
        racing.start(MODEL, v1, "prod", actor="alice")
        slow = {"strategy": {"canary": {"steps": [{"weight": 30, "min_requests": 10**6}]}}}
        rollout_id = racing.start(MODEL, v2, "prod", load_spec(slow), actor="alice")
        release = racing.rollback(MODEL, "prod", actor="bob", reason="looks off")
        assert raced
        assert (release.rollout_id, release.version, release.outcome) == (
            rollout_id,
            v2,
            "rolled_back",
        )
        moves = [(e.to_state, e.actor) for e in racing.events(rollout_id)][-2:]
        assert moves[0] == ("rolling_back", "bob") and moves[1][0] == "rolled_back"
        assert len([r for r in racing.history(MODEL, "prod") if r.rollout_id == rollout_id]) == 1
    finally:
        racing.close()
        loop.close()


def test_the_drift_report_is_rendered_once_the_rollout_waits_not_between_its_moves(
    manager: Manager, home: DemoHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering a judged window's drift report (Evidently: seconds) is not part of the tick:
    the pass and the promotion it allows are made in one go, and the report is written on the
    reports' own thread, of the step that passed."""
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    spec = load_spec(
        {
            "strategy": {"canary": {"steps": [{"weight": 50, "min_requests": 300}]}},
            "analysis": {"gates": [{"error_rate": {"max_increase": 0.1}}]},
        }
    )
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    write(manager, rollout_id, "canary", 400, v2)
    write(manager, rollout_id, "baseline", 400, v1)
    rendered: list[tuple[str, str]] = []
    render = manager.evidence.write_report

    def spy(record: RolloutRecord, evidence: Any, path: Any) -> None:
        rendered.append((manager.rollout(record.id).state, path.name))
        render(record, evidence, path)

    monkeypatch.setattr(manager.loop.reports, "_render", spy)
    moves = [(d.from_state, d.to_state) for d in manager.tick()]
    assert moves == [("progressing", "promoting"), ("promoting", "succeeded")]
    assert manager.loop.reports.flush(60)  # rendered on the reports' own thread
    assert len(rendered) == 1  # the step's report (rows without features: nothing to draw)
    assert rendered[0][0] == "succeeded" and rendered[0][1].startswith("step-1-")
