"""Rollouts through a real router process (``python -m router``, polling the store every 0.1 s).

- Smoke tests: the candidate is staged at 0%, probed pinned with the manager's token, and only
  then given traffic; a failing smoke test ends the rollout before any user request reaches it.
- Blue/green: a pinned-only preview, then all traffic at once with the old version still
  loaded; a rollback during the bake takes effect on the router without loading anything, no
  request failing meanwhile; a bake that completes promotes.
- Shadow: mirrored requests only; the paired test recommends the better version (promoted on
  approval) and rolls back the broken one.
- Linear: real requests with delayed labels; the better version walks 50% → 100% and is
  promoted, the broken one is rolled back on the quality gate at its first step.

Nothing here sleeps a fixed time: a test waits (:func:`conftest.wait_until`) for the router to
apply the plan now in the store (its ``/v1/models`` generation), for the prediction log to hold
the requests sent, or ticks the manager until it moves. The manager keeps the wall clock: the
router process stamps the records it logs with its own, so a step's duration (the 1 s preview
and bake) really passes, and the test ticks until the manager sees it has.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import MODEL, DemoHome, wait_until
from rollout.cli.formatting import format_status
from rollout.machine import Decision
from rollout.manager import Manager
from rollout.router_keys import router_secrets
from rollout.smoke import SmokeRunner
from rollout.spec import load_spec
from rollout.store.predictions import PredictionLog
from rollout.store.records import RolloutRecord
from rollout.up import ProcessSpec, Supervisor, free_port

TOKEN = "manager-pin-token"
MALLORY = "a-leaked-label-writer-token"


@pytest.fixture
def router_url(home: DemoHome, tmp_path: Path) -> Iterator[str]:
    """A router process (``python -m router``) on the home's registry and store."""
    port = free_port()
    supervisor = Supervisor(home.settings, log_dir=tmp_path / "router-logs")
    spec = ProcessSpec(
        role="router",
        argv=[
            sys.executable, "-m", "router", "--host", "127.0.0.1", "--port", str(port),
            "--environment", "prod", "--plan-poll-s", "0.1",
        ],
        health_url=f"http://127.0.0.1:{port}/healthz",
        env={
            "ROLLOUT_LOG_FLUSH_S": "0.1",
            "ROLLOUT_PIN_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            **router_secrets(home.settings.home).env({}),
            # a second label writer, whose token an attacker holds (test_forged_labels...)
            "ROLLOUT_LABEL_TOKEN_SHA256": ",".join(
                hashlib.sha256(t.encode()).hexdigest()
                for t in (router_secrets(home.settings.home).label_token, MALLORY)
            ),
        },
    )  # fmt: skip
    try:
        supervisor.start(spec, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        supervisor.stop()


def wait_ready(router_url: str) -> None:
    """Until the router process has loaded and warmed every version of its plans."""
    wait_until(
        lambda: httpx.get(f"{router_url}/readyz", timeout=10),
        "the router to load the release",
        until=lambda ready: ready.status_code == 200,
        interval_s=0.05,
    )


def split(frame: Any) -> dict[str, Any]:
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def wait_plan(manager: Manager, client: httpx.Client) -> None:
    """Until the router answers with the plan generation now in the store."""
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    wait_until(  # asked without a request a user could make (no prediction is served)
        lambda: [m["generation"] for m in client.get("/v1/models").json()["models"]],
        f"the router to apply plan generation {plan.generation}",
        until=lambda generations: generations == [plan.generation],
    )


def tick_until_moved(manager: Manager) -> list[Decision]:
    """Tick until the manager moves a rollout on (e.g. once a step's duration has passed)."""
    return wait_until(manager.tick, "the manager's next move", interval_s=0.05)


def tick_until_left(manager: Manager, rollout_id: str, state: str) -> RolloutRecord:
    """Tick until the rollout is no longer in ``state``; returns it."""

    def tick_then_read() -> RolloutRecord:
        manager.tick()
        return manager.rollout(rollout_id)

    return wait_until(
        tick_then_read,
        f"rollout {rollout_id} to leave {state}",
        until=lambda record: record.state != state,
        interval_s=0.05,
    )


def tick_until_not(manager: Manager, rollout_id: str, state: str, client: httpx.Client) -> None:
    """Tick while the rollout is in ``state``; meanwhile public requests must get the baseline."""
    baseline = manager.rollout(rollout_id).baseline_version
    wait_plan(manager, client)  # the router has applied the rollout's plan (not an older one)

    def request_then_tick() -> RolloutRecord:
        record = manager.rollout(rollout_id)
        if record.state == state:
            # Asked while still in `state` (a tick may move it on and change the plan).
            reply = client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC)
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-model-version"] == baseline
            manager.tick()
        return record

    wait_until(
        request_then_tick,
        f"rollout {rollout_id} to leave {state}",
        until=lambda record: record.state != state,
        interval_s=0.1,
    )


def wait_logged(manager: Manager, rollout_id: str, **at_least: int) -> dict[str, int]:
    """Until the prediction log holds ``at_least`` requests of the rollout per arm (the router
    writes its log in batches, off the request path)."""
    return wait_until(
        lambda: manager.requests(rollout_id),
        f"the router to log {at_least} requests of rollout {rollout_id}",
        until=lambda logged: all(logged.get(arm, 0) >= n for arm, n in at_least.items()),
    )


PUBLIC: dict[str, Any] = {}


def test_smoke_tests_gate_the_first_traffic(home: DemoHome, router_url: str) -> None:
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    manager = Manager(home.settings)
    manager.smoke = SmokeRunner({"prod": router_url}, TOKEN, load_timeout_s=30)
    rows = home.data.serve_X.head(60)
    p2 = manager.registry.load_model(MODEL, v2).predict(rows).tolist()
    p3 = manager.registry.load_model(MODEL, v3).predict(rows).tolist()
    differ = [i for i in range(len(rows)) if p2[i] != p3[i]][:5]
    assert differ, "v2 and v3 agree on every row"
    PUBLIC.update(split(rows.head(1)))
    smoke = [
        {"name": "three rows", "payload": split(rows.head(3))},
        {
            "name": "known answers",
            "payload": split(rows.iloc[differ]),
            "expect_predictions": [p2[i] for i in differ],
        },
        {"name": "bad input", "payload": {"inputs": "nonsense"}, "expect_status": 422},
    ]
    spec = {"strategy": {"canary": {"steps": [{"weight": 50}]}}, "smoke_tests": smoke}
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            # Users are served by v1 before the rollouts (the verifying phases may be too short,
            # on a loaded machine, for tick_until_not to send any request of its own).
            wait_plan(manager, client)
            assert [serve(client) for _ in range(3)] == [v1, v1, v1]
            good = manager.start(MODEL, v2, "prod", load_spec(spec), actor="alice")
            tick_until_not(manager, good, "verifying", client)
            record = manager.rollout(good)
            assert record.state == "progressing", record.reason
            verified = manager.events(good)[-1]
            assert verified.evidence is not None
            gates = [(g["gate"], g["test"], g["verdict"]) for g in verified.evidence["gates"]]
            assert gates == [
                ("artifact_digest", "sha256", "pass"),
                ("three rows", "smoke", "pass"),
                ("known answers", "smoke", "pass"),
                ("bad input", "smoke", "pass"),
            ]
            manager.abort(MODEL, "prod", actor="alice")

            bad = manager.start(MODEL, v3, "prod", load_spec(spec), actor="alice")
            tick_until_not(manager, bad, "verifying", client)
        record = manager.rollout(bad)
        assert record.state == "aborted"
        assert record.reason is not None
        assert record.reason.startswith(
            "verification failed: smoke test known answers failed: predictions "
        )
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
        release = manager.history(MODEL, "prod")[0]
        assert (release.version, release.outcome) == (v3, "aborted")
        log = PredictionLog(manager.engine)
        served = wait_until(  # the router writes its records in batches
            lambda: {r.version for r in log.recent("prod", MODEL, 1000) if r.arm != "pinned"},
            "the router to record a public request",
        )
        assert served == {v1}  # no user request ever reached v2 or v3
    finally:
        manager.close()


def test_smoke_tests_without_a_router_fail_clearly(home: DemoHome) -> None:
    manager = Manager(home.settings)
    manager.smoke = SmokeRunner({}, None)
    spec = {
        "strategy": {"canary": {"steps": [{"weight": 50}]}},
        "smoke_tests": [{"payload": {"inputs": [[1.0]]}}],
    }
    try:
        manager.start(MODEL, home.versions["baseline"], "prod", actor="alice")
        rollout_id = manager.start(
            MODEL, home.versions["better"], "prod", load_spec(spec), actor="alice"
        )
        record = manager.rollout(rollout_id)
        assert record.state == "aborted"
        assert record.reason is not None and record.reason.endswith(
            "1 smoke test(s) declared but ROLLOUT_ROUTER_URL_PROD or ROLLOUT_ROUTER_URL is not "
            "set for the manager"
        )
    finally:
        manager.close()


def serve(client: httpx.Client, **headers: str) -> str:
    reply = client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.headers["x-model-version"]


def test_blue_green_preview_switch_rollback_and_promotion(home: DemoHome, router_url: str) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager = Manager(home.settings)
    PUBLIC.update(split(home.data.serve_X.head(1)))
    pin = {"x-model-version": v2, "authorization": f"Bearer {TOKEN}"}
    spec = load_spec(
        {"strategy": {"blue_green": {"preview": "1s", "bake": "1s", "min_requests": 20}}}
    )
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            first = manager.start(MODEL, v2, "prod", spec, actor="alice")
            record = manager.rollout(first)
            assert (record.state, record.step_index) == ("progressing", 0)
            reply = wait_until(  # preview: the router loads v2, reachable by pinning only
                lambda: client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC, headers=pin),
                "the router to serve v2 to a pinned request",
                until=lambda reply: reply.status_code == 200,
                interval_s=0.05,
            )
            assert reply.headers["x-model-version"] == v2
            assert {serve(client) for _ in range(20)} == {v1}

            (switched,) = tick_until_moved(manager)  # the 1 s preview has passed
            assert (switched.event, switched.step_index) == ("step_passed", 1)
            plan = manager.plans.get("prod", MODEL)
            assert plan is not None
            assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (
                v1,
                v2,
                100,
            )  # the old version stays in the plan, loaded
            wait_until(lambda: serve(client), "all traffic on v2", until=lambda v: v == v2)
            wait_plan(manager, client)
            assert {serve(client) for _ in range(20)} == {v2}
            (status,) = client.get("/v1/models").json()["models"]
            assert {(v["version"], v["loaded"]) for v in status["versions"]} == {
                (v1, True),
                (v2, True),
            }  # so a rollback needs no load: it takes effect at the router's next poll

            release = manager.rollback(MODEL, "prod", actor="bob", reason="preview looked wrong")
            assert (release.version, release.outcome) == (v2, "rolled_back")
            # Every request meanwhile is answered (serve asserts a 200), then all by v1.
            wait_until(lambda: serve(client), "all traffic back on v1", until=lambda v: v == v1)
            wait_plan(manager, client)
            assert {serve(client) for _ in range(20)} == {v1}
            assert manager.registry.alias_version(MODEL, "prod") == v1

            second = manager.start(MODEL, v2, "prod", spec, actor="alice")
            tick_until_moved(manager)  # the 1 s preview has passed
            assert manager.rollout(second).step_index == 1
            wait_plan(manager, client)  # the bake's requests are served by the bake's plan

            def serve_then_tick() -> RolloutRecord:
                serve(client)
                manager.tick()
                return manager.rollout(second)

            wait_until(
                serve_then_tick,
                "the bake to complete and promote",
                until=lambda record: record.state == "succeeded",
                interval_s=0,
            )
        events = [(e.to_state, e.step_index) for e in manager.events(second)]
        assert events[-4:] == [
            ("progressing", 0),
            ("progressing", 1),
            ("promoting", 1),
            ("succeeded", 1),
        ]
        assert manager.registry.alias_version(MODEL, "prod") == v2
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v2, None)
    finally:
        manager.close()


def test_blue_green_of_a_broken_version_fails_its_golden_set_before_the_switch(
    home: DemoHome, router_url: str
) -> None:
    v1, v3 = home.versions["baseline"], home.versions["broken"]
    manager = Manager(home.settings)
    manager.smoke = SmokeRunner({"prod": router_url}, TOKEN, load_timeout_s=30)
    rows, labels = home.data.serve_X.head(80), home.data.serve_y.head(80).tolist()
    p3 = manager.registry.load_model(MODEL, v3).predict(rows).tolist()
    wrong = [i for i in range(len(rows)) if p3[i] != labels[i]][:5]
    assert wrong, "v3 is right on every golden row"
    golden = {"name": "golden set", "payload": split(rows.iloc[wrong])}
    golden["expect_predictions"] = [labels[i] for i in wrong]
    spec = load_spec(
        {
            "strategy": {"blue_green": {"preview": "1s", "bake": "1s", "min_requests": 20}},
            "smoke_tests": [golden],
        }
    )
    PUBLIC.update(split(rows.head(1)))
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            broken = manager.start(MODEL, v3, "prod", spec, actor="alice")
            tick_until_not(manager, broken, "verifying", client)
            assert {serve(client) for _ in range(20)} == {v1}  # the switch never happened
        record = manager.rollout(broken)
        assert record.state == "aborted"
        assert record.reason is not None and "golden set" in record.reason
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
        assert manager.registry.alias_version(MODEL, "prod") == v1
    finally:
        manager.close()


def test_shadow_recommends_the_good_version_and_rolls_back_the_broken_one(
    home: DemoHome, router_url: str
) -> None:
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    manager = Manager(home.settings)
    rows = home.data.serve_X.head(80)
    requests = [split(rows.iloc[[i]]) for i in range(len(rows))]

    def mirror_until_judged(rollout_id: str, client: httpx.Client, serving: str) -> None:
        wait_plan(manager, client)  # the requests are served (and mirrored) by the shadow's plan
        index = 0

        def mirror_then_tick() -> RolloutRecord:
            nonlocal index
            for _ in range(10):
                body = requests[index % len(requests)]
                index += 1
                reply = client.post(f"/v1/models/{MODEL}/invocations", json=body)
                assert reply.headers["x-model-version"] == serving  # the shadow answers nobody
            wait_logged(manager, rollout_id, baseline=index, shadow=index)
            manager.tick()
            return manager.rollout(rollout_id)

        wait_until(
            mirror_then_tick,
            f"shadow rollout {rollout_id} to be judged",
            until=lambda record: record.state != "progressing",
            interval_s=0,
        )

    # v2 disagrees with v1 on 8% of these rows (proven below 20% within a few hundred pairs);
    # v3 with v2 on 37% (proven above)
    spec = load_spec({"strategy": {"shadow": {"min_requests": 60, "max_disagreement": 0.2}}})
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            good = manager.start(MODEL, v2, "prod", spec, actor="alice")
            plan = manager.plans.get("prod", MODEL)
            assert plan is not None
            assert (plan.canary_weight_pct, plan.shadow_version, plan.shadow_fraction) == (
                0,
                v2,
                1.0,
            )
            mirror_until_judged(good, client, v1)
            record = manager.rollout(good)
            assert record.state == "awaiting_approval", record.reason
            judged = manager.events(good)[-1]
            assert judged.evidence is not None
            (gate,) = judged.evidence["gates"]
            assert (gate["test"], gate["verdict"]) == ("disagreement_bounds", "pass")
            assert gate["ci_high"] <= 0.2  # proven below the maximum
            assert judged.evidence["n_canary"] >= 60
            assert "recommendation: promote" in judged.reason
            assert manager.approve(MODEL, "prod", actor="bob").state == "succeeded"
            PUBLIC.update(requests[0])
            wait_until(  # the router applies the promoted plan
                lambda: serve(client), "the promoted v2 serving", until=lambda v: v == v2
            )

            bad = manager.start(MODEL, v3, "prod", spec, actor="alice")
            mirror_until_judged(bad, client, v2)
        record = manager.rollout(bad)
        assert record.state == "rolled_back", record.reason
        failed = next(e for e in manager.events(bad) if e.to_state == "rolling_back")
        assert failed.evidence is not None and failed.evidence["verdict"] == "fail"
        assert "recommendation: do not promote" in failed.reason
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.shadow_version) == (v2, None)
        release = manager.history(MODEL, "prod")[0]
        assert (release.version, release.outcome) == (v3, "rolled_back")
        assert release.evidence is not None and release.evidence["final"]["verdict"] == "fail"
    finally:
        manager.close()


def test_linear_promotes_the_better_version_and_rolls_back_the_broken_one(
    home: DemoHome, router_url: str
) -> None:
    """Real requests with delayed labels (POST /v1/feedback) through the router."""
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    manager = Manager(home.settings)
    rows, labels = home.data.serve_X, home.data.serve_y.tolist()
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2, "min_requests": 60}},
            "analysis": {
                "gates": [{"quality": {"max_decrease": 0.02, "min_labels": 40}}],
                "correction": "none",
                "on_inconclusive": "extend",
            },
        }
    )

    def drive(rollout_id: str, client: httpx.Client) -> None:
        index = 0

        def serve_label_then_tick() -> RolloutRecord:
            nonlocal index
            # Each step's requests are served by that step's plan (the router has applied it),
            # so a step's window holds no request routed by the step before.
            wait_plan(manager, client)
            feedback = []
            for _ in range(40):
                i = index % len(rows)
                index += 1
                reply = client.post(
                    f"/v1/models/{MODEL}/invocations",
                    json=split(rows.iloc[[i]]),
                    headers={"x-rollout-key": f"user-{index}"},
                )
                assert reply.status_code == 200, reply.text
                feedback.append({"request_id": reply.headers["x-request-id"], "label": labels[i]})
            writer = {"authorization": f"Bearer {router_secrets(home.settings.home).label_token}"}
            assert client.post("/v1/feedback", json=feedback, headers=writer).status_code == 202
            wait_until(  # the router writes its prediction log in batches
                lambda: sum(manager.requests(rollout_id).values()),
                f"the router to log {index} requests",
                until=lambda logged: logged >= index,
            )
            manager.tick()
            return manager.rollout(rollout_id)

        wait_until(
            serve_label_then_tick,
            f"rollout {rollout_id} to finish",
            90,
            until=lambda record: not record.active,
            interval_s=0,
        )

    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            wait_plan(manager, client)
            good = manager.start(MODEL, v2, "prod", spec, actor="alice")
            drive(good, client)
            assert manager.rollout(good).state == "succeeded", manager.rollout(good).reason
            weights = [
                e.evidence["weight_pct"]
                for e in manager.events(good)
                if e.evidence and e.evidence["kind"] == "step"
            ]
            assert weights[-2:] == [50, 100]
            wait_plan(manager, client)
            assert client.get("/v1/models").json()["models"][0]["baseline_version"] == v2

            bad = manager.start(MODEL, v3, "prod", spec, actor="alice")
            drive(bad, client)
        record = manager.rollout(bad)
        assert (record.state, record.step_index) == ("rolled_back", 0), record.reason
        failed = next(e for e in manager.events(bad) if e.to_state == "rolling_back")
        assert failed.evidence is not None
        (gate,) = failed.evidence["gates"]
        assert (gate["gate"], gate["verdict"]) == ("quality", "fail")
        assert manager.registry.alias_version(MODEL, "prod") == v2
        release = manager.history(MODEL, "prod")[0]
        assert (release.version, release.outcome) == (v3, "rolled_back")
        assert release.evidence is not None and release.evidence["final"]["verdict"] == "fail"
    finally:
        manager.close()


def _next_id(request_id: str) -> str:
    """The id after ``request_id`` if ids were a prefix and a counter (as they were)."""
    return f"{int(request_id, 16) + 1:064x}"[-64:]


def test_forged_labels_change_no_verdict(home: DemoHome, router_url: str) -> None:
    """The attack of issue 11: an anonymous caller guesses request ids and posts labels that
    make the broken v3 look right (its canary answers "correct", the baseline's "wrong"); a
    holder of another label writer's token tries to overwrite the honest labels. Every forged
    label is refused (401, 404, 409), none is stored, and v3 is still rolled back."""
    v1, v3 = home.versions["baseline"], home.versions["broken"]
    manager = Manager(home.settings)
    rows, labels = home.data.serve_X, home.data.serve_y.tolist()
    honest = {"authorization": f"Bearer {router_secrets(home.settings.home).label_token}"}
    mallory = {"authorization": f"Bearer {MALLORY}"}
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2, "min_requests": 60}},
            "analysis": {
                "gates": [{"quality": {"max_decrease": 0.02, "min_labels": 40}}],
                "correction": "none",
                "on_inconclusive": "extend",
            },
        }
    )
    refused: dict[int, int] = {}

    def attempt(client: httpx.Client, body: list[dict[str, Any]], **headers: str) -> None:
        status = client.post("/v1/feedback", json=body, headers=headers).status_code
        refused[status] = refused.get(status, 0) + 1

    def drive(rollout_id: str, client: httpx.Client) -> None:
        index = 0

        def serve_attack_label_then_tick() -> RolloutRecord:
            nonlocal index
            wait_plan(manager, client)
            truth, forged, guessed = [], [], []
            for _ in range(40):
                i = index % len(rows)
                index += 1
                reply = client.post(
                    f"/v1/models/{MODEL}/invocations",
                    json=split(rows.iloc[[i]]),
                    headers={"x-rollout-key": f"user-{index}"},
                )
                assert reply.status_code == 200, reply.text
                rid, (predicted,) = reply.headers["x-request-id"], reply.json()["predictions"]
                lie = predicted if reply.headers["x-arm"] == "canary" else 1 - predicted
                truth.append({"request_id": rid, "label": labels[i]})
                forged.append({"request_id": rid, "label": lie})
                guessed.append({"request_id": _next_id(rid), "label": lie})
            attempt(client, forged)  # anonymous, before the honest labels: 401
            attempt(client, guessed)  # anonymous, guessed ids: 401
            attempt(client, guessed, **mallory)  # a label writer, guessed ids: 404
            assert client.post("/v1/feedback", json=truth, headers=honest).status_code == 202
            attempt(client, forged, **mallory)  # overwriting the honest labels: 409
            wait_until(
                lambda: sum(manager.requests(rollout_id).values()),
                f"the router to log {index} requests",
                until=lambda logged: logged >= index,
            )
            manager.tick()
            return manager.rollout(rollout_id)

        wait_until(
            serve_attack_label_then_tick,
            f"rollout {rollout_id} to finish",
            90,
            until=lambda record: not record.active,
            interval_s=0,
        )

    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            wait_plan(manager, client)
            bad = manager.start(MODEL, v3, "prod", spec, actor="alice")
            drive(bad, client)
        record = manager.rollout(bad)
        assert (record.state, record.step_index) == ("rolled_back", 0), record.reason
        failed = next(e for e in manager.events(bad) if e.to_state == "rolling_back")
        assert failed.evidence is not None
        assert [(g["gate"], g["verdict"]) for g in failed.evidence["gates"]] == [
            ("quality", "fail")
        ]
        assert manager.registry.alias_version(MODEL, "prod") == v1
        rounds = refused[401] // 2
        assert rounds >= 1 and refused == {401: 2 * rounds, 404: rounds, 409: rounds}
        with manager.engine.connect() as conn:
            writers = conn.execute(
                text("SELECT writer, count(*) FROM feedback GROUP BY writer")
            ).all()
            history = conn.execute(text("SELECT count(*) FROM feedback_history")).scalar_one()
        digest = hashlib.sha256(honest["authorization"][7:].encode()).hexdigest()
        assert writers == [("sha256:" + digest[:16], 40 * rounds)] and history == 0
    finally:
        manager.close()


def serve_pinned(client: httpx.Client, pin: dict[str, str]) -> int:
    return client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC, headers=pin).status_code


def test_blue_green_preview_judges_pinned_requests_and_stops_a_broken_version(
    home: DemoHome, router_url: str
) -> None:
    v1, v3 = home.versions["baseline"], home.versions["broken"]
    manager = Manager(home.settings)
    spec = load_spec(
        {
            "strategy": {"blue_green": {"preview": "1s", "preview_requests": 120, "bake": "1s"}},
            # blocking: the class mix may move by at most 0.05 (total variation); v3's moves 0.41
            "analysis": {"gates": [{"output_drift": {"method": "chi_square", "delta": 0.05}}]},
        }
    )
    pin = {"x-model-version": v3, "authorization": f"Bearer {TOKEN}"}
    rows = home.data.serve_X.head(150)
    PUBLIC.update(split(rows.head(1)))
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            broken = manager.start(MODEL, v3, "prod", spec, actor="alice")
            wait_until(  # v3 staged at 0%: pinning only
                lambda: serve_pinned(client, pin),
                "the router to serve v3 to a pinned request",
                until=lambda status: status == 200,
                interval_s=0.05,
            )
            for i in range(len(rows)):  # the same rows, publicly and pinned to the candidate
                one = split(rows.iloc[[i]])
                public = client.post(f"/v1/models/{MODEL}/invocations", json=one)
                pinned = client.post(f"/v1/models/{MODEL}/invocations", json=one, headers=pin)
                assert public.headers["x-model-version"] == v1, public.text
                assert pinned.headers["x-model-version"] == v3, pinned.text
            # Judged once every request is logged (the router writes in batches) and 1 s passed.
            wait_logged(manager, broken, baseline=len(rows), pinned=len(rows))
            tick_until_left(manager, broken, "progressing")
            assert {serve(client) for _ in range(10)} == {v1}  # the switch never happened
        record = manager.rollout(broken)
        assert record.state == "rolled_back", record.reason
        failed = next(e for e in manager.events(broken) if e.to_state == "rolling_back")
        assert failed.step_index == 0 and failed.evidence is not None
        (gate,) = failed.evidence["gates"]
        assert (gate["gate"], gate["test"], gate["verdict"]) == (
            "output_drift",
            "total_variation",
            "fail",
        )
        assert gate["ci_low"] > 0.05
        assert gate["n_canary"] >= len(rows) and gate["n_baseline"] >= len(rows)
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    finally:
        manager.close()


RAISING_CODE = """
import mlflow


class Raising(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this version fails every request")


mlflow.models.set_model(Raising())
"""


def register_pyfunc(home: DemoHome, tmp_path: Path, name: str, code_text: str) -> str:
    """A version of the demo model, with its signature, from a pyfunc's code."""
    import mlflow
    from mlflow.models import infer_signature

    rows = home.data.serve_X.head(5)
    code = tmp_path / f"{name}_model.py"
    code.write_text(code_text)
    mlflow.set_tracking_uri(home.settings.registry_uri)
    mlflow.set_registry_uri(home.settings.registry_uri)
    experiment = mlflow.create_experiment(
        name, artifact_location=(tmp_path / f"{name}-artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=infer_signature(rows, [0] * len(rows)),
            registered_model_name=MODEL,
            pip_requirements=["mlflow"],
        )
    return str(info.registered_model_version)


def register_raising(home: DemoHome, tmp_path: Path) -> str:
    """A version of the demo model that raises on every request."""
    return register_pyfunc(home, tmp_path, "raising", RAISING_CODE)


@pytest.mark.parametrize(
    "strategy",
    [
        {"canary": {"steps": [{"weight": 100, "min_requests": 20}]}},
        {"blue_green": {"preview": "1s", "bake": "1m", "min_requests": 20}},
        {"linear": {"steps": 1, "min_requests": 20}},
    ],
    ids=["canary-100", "blue-green-bake", "linear-last-step"],
)
def test_a_candidate_failing_every_request_alone_is_rolled_back_and_no_client_sees_it(
    home: DemoHome, router_url: str, tmp_path: Path, strategy: dict[str, Any]
) -> None:
    """At 100% (no baseline beside it, no smoke test) the router answers the candidate's
    failed requests with the old version, still loaded: no client sees an error. The SLO
    counts those failovers as the candidate's errors, so it is rolled back, never promoted."""
    v1 = home.versions["baseline"]
    raising = register_raising(home, tmp_path)
    manager = Manager(home.settings)
    PUBLIC.update(split(home.data.serve_X.head(1)))
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            spec = load_spec({"strategy": strategy})
            rollout_id = manager.start(MODEL, raising, "prod", spec, actor="alice")
            answered: list[str] = []

            def serve_then_tick() -> RolloutRecord:
                answered.append(serve(client))  # asserts a 200
                manager.tick()
                return manager.rollout(rollout_id)

            record = wait_until(
                serve_then_tick,
                "the candidate to be rolled back",
                until=lambda record: record.state not in ("pending", "verifying", "progressing"),
                interval_s=0,
            )
        assert record.state == "rolled_back", record.reason
        assert set(answered) == {v1}  # every client request answered, by the old version
        failed = manager.events(rollout_id)[-2]
        assert failed.evidence is not None
        gates = {g["gate"]: g["verdict"] for g in failed.evidence["gates"]}
        assert gates["slo_error_rate"] == "fail"
        assert failed.evidence["weight_pct"] == 100
        assert manager.registry.alias_version(MODEL, "prod") == v1
        assert [r.version for r in manager.history(MODEL, "prod")][:1] == [raising]
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    finally:
        manager.close()


FLAKY_CODE = """
from pathlib import Path

import mlflow


class Flaky(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if Path({flag!r}).exists():
            raise RuntimeError("this version fails once the flag file exists")
        return [0] * len(model_input)


mlflow.models.set_model(Flaky())
"""


def register_flaky(home: DemoHome, tmp_path: Path, flag: Path) -> str:
    """A version of the demo model that answers 0 until ``flag`` exists, then raises."""
    return register_pyfunc(home, tmp_path, "flaky", FLAKY_CODE.format(flag=str(flag)))


@pytest.fixture
def two_routers(home: DemoHome, tmp_path: Path) -> Iterator[list[str]]:
    """Two router processes of prod on the home's registry and store."""
    supervisor = Supervisor(home.settings, log_dir=tmp_path / "router-logs")
    urls = []
    try:
        for _ in range(2):
            port = free_port()
            spec = ProcessSpec(
                role="router",
                argv=[
                    sys.executable, "-m", "router", "--host", "127.0.0.1", "--port", str(port),
                    "--environment", "prod", "--plan-poll-s", "0.5",
                ],
                health_url=f"http://127.0.0.1:{port}/healthz",
                env={"ROLLOUT_LOG_FLUSH_S": "0.1"},
            )  # fmt: skip
            supervisor.start(spec, timeout_s=60)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        supervisor.stop()


def test_a_release_that_fails_during_its_watch_is_rolled_back_on_every_router(
    home: DemoHome, two_routers: list[str], tmp_path: Path
) -> None:
    """Promoted with a watch, the release keeps the old version loaded beside it. When it
    starts failing, the router's failover answers with the old version, the watch's SLO
    counts those failures, and the manager returns plan and alias to the old version by itself
    (a release of kind rollback): every router then serves it as the baseline."""
    v1 = home.versions["baseline"]
    flag = tmp_path / "fail-now"
    flaky = register_flaky(home, tmp_path, flag)
    manager = Manager(home.settings)
    PUBLIC.update(split(home.data.serve_X.head(1)))
    clients = [httpx.Client(base_url=url, timeout=30) for url in two_routers]
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        for url in two_routers:
            wait_ready(url)
        spec = load_spec(
            {
                "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 20}]}},
                "analysis": {"gates": "none", "slo": {"error_rate": {"max": 0.05}}},
                "watch": "10m",
            }
        )
        rollout_id = manager.start(MODEL, flaky, "prod", spec, actor="alice")
        turn = iter(range(10**9))

        def serve_then_tick() -> RolloutRecord:
            serve(clients[next(turn) % 2])  # asserts a 200
            manager.tick()
            return manager.rollout(rollout_id)

        watching = wait_until(
            serve_then_tick,
            "the release to be promoted and watched",
            until=lambda record: record.state not in ("pending", "verifying", "progressing"),
            interval_s=0,
        )
        assert watching.state == "watching", watching.reason
        assert manager.registry.alias_version(MODEL, "prod") == flaky
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None
        assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (
            v1,
            flaky,
            100,
        )
        status = manager.status(MODEL, "prod")
        assert status.next_move is not None and status.next_move.startswith("watching, 10 min")
        shown = format_status(status)
        assert f"plan: v{flaky} 100% (v{v1} loaded beside it)" in shown
        assert f"rollout {rollout_id}: watching" in shown

        flag.touch()  # the release starts failing; the failover still answers every client
        answered: list[str] = []

        def failing_then_tick() -> RolloutRecord:
            answered.append(serve(clients[next(turn) % 2]))
            manager.tick()
            return manager.rollout(rollout_id)

        record = wait_until(
            failing_then_tick,
            "the watch to roll the release back",
            until=lambda record: record.state != "watching",
            interval_s=0,
        )
        decided = time.monotonic()
        assert record.state == "rolled_back", record.reason
        assert "failed its watch" in record.reason
        assert set(answered) >= {v1}  # failovers (and, before the flag was seen, the release)
        assert manager.registry.alias_version(MODEL, "prod") == v1
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
        latest = manager.history(MODEL, "prod")[0]
        assert (latest.kind, latest.version, latest.previous_version, latest.outcome) == (
            "rollback",
            v1,
            flaky,
            "succeeded",
        )
        assert latest.evidence is not None
        final = latest.evidence["final"]
        assert final["kind"] == "watch"
        assert {g["gate"]: g["verdict"] for g in final["gates"]}["slo_error_rate"] == "fail"

        def arms() -> set[tuple[str, str]]:
            replies = [c.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC) for c in clients]
            return {(r.headers["x-model-version"], r.headers["x-arm"]) for r in replies}

        wait_until(
            arms, "every router to serve v1 alone", until=lambda seen: seen == {(v1, "baseline")}
        )
        print(
            f"rollback reached both routers {time.monotonic() - decided:.2f} s after the decision"
        )
    finally:
        for client in clients:
            client.close()
        manager.close()
