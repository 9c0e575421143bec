"""Rollouts through a real router process (``python -m router``, polling the store every 0.1 s).

- Smoke tests: the candidate is staged at 0%, probed pinned with the manager's token, and only
  then given traffic; a failing smoke test ends the rollout before any user request reaches it.
- Blue/green: a pinned-only preview, then all traffic at once with the old version still
  loaded; a rollback during the bake takes effect on the router within a second; a bake that
  completes promotes.
- Shadow: mirrored requests only; the paired test recommends the better version (promoted on
  approval) and rolls back the broken one.
- Linear: real requests with delayed labels; the better version walks 50% → 100% and is
  promoted, the broken one is rolled back on the quality gate at its first step.
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

from conftest import MODEL, DemoHome
from rollout.manager import Manager
from rollout.smoke import SmokeRunner
from rollout.spec import load_spec
from rollout.store.predictions import PredictionLog
from rollout.up import ProcessSpec, Supervisor, free_port

TOKEN = "manager-pin-token"


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
        },
    )  # fmt: skip
    try:
        supervisor.start(spec, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        supervisor.stop()


def wait_ready(router_url: str, timeout_s: float = 60.0) -> None:
    """Until the router process has loaded and warmed every version of its plans."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{router_url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the router did not load the release"
        time.sleep(0.05)


def split(frame: Any) -> dict[str, Any]:
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def wait_plan(manager: Manager, client: httpx.Client, timeout_s: float = 10.0) -> None:
    """Until the router answers with the plan generation now in the store."""
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None
    deadline = time.monotonic() + timeout_s
    while True:  # asked without a request a user could make (no prediction is served)
        (status,) = client.get("/v1/models").json()["models"]
        if status["generation"] == plan.generation:
            return
        assert time.monotonic() < deadline, f"router still on {status}"
        time.sleep(0.02)


def tick_until_not(manager: Manager, rollout_id: str, state: str, client: httpx.Client) -> int:
    """Tick while the rollout is in ``state``; meanwhile public requests must get the baseline.

    Returns how many public requests were served."""
    deadline = time.monotonic() + 60
    baseline = manager.rollout(rollout_id).baseline_version
    wait_plan(manager, client)  # the router has applied the rollout's plan (not an older one)
    served = 0
    while manager.rollout(rollout_id).state == state:
        assert time.monotonic() < deadline, manager.status(MODEL, "prod").next_move
        # Asked while still in `state` (a tick may move it on and change the plan).
        reply = client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-model-version"] == baseline
        manager.tick()
        served += 1
        time.sleep(0.1)
    return served


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
            public_ok = 0
            deadline = time.monotonic() + 30
            while public_ok < 3:
                assert time.monotonic() < deadline, "the router never served the initial release"
                reply = client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC)
                if reply.status_code == 200:
                    assert reply.headers["x-model-version"] == v1
                    public_ok += 1
                time.sleep(0.05)
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
        deadline = time.monotonic() + 10  # the router writes its records in batches
        log = PredictionLog(manager.engine)
        while not (served := {r.version for r in log.recent("prod", MODEL, 1000)
                              if r.arm != "pinned"}):  # fmt: skip
            assert time.monotonic() < deadline, "the router recorded no public request"
            time.sleep(0.1)
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
            deadline = time.monotonic() + 30
            while True:  # preview: the router loads v2, reachable by pinning only
                reply = client.post(f"/v1/models/{MODEL}/invocations", json=PUBLIC, headers=pin)
                if reply.status_code == 200:
                    break
                assert time.monotonic() < deadline, reply.text
                time.sleep(0.05)
            assert reply.headers["x-model-version"] == v2
            assert {serve(client) for _ in range(20)} == {v1}

            time.sleep(1.0)
            (switched,) = manager.tick()
            assert (switched.event, switched.step_index) == ("step_passed", 1)
            plan = manager.plans.get("prod", MODEL)
            assert plan is not None
            assert (plan.baseline_version, plan.canary_version, plan.canary_weight_pct) == (
                v1,
                v2,
                100,
            )  # the old version stays in the plan, loaded
            while serve(client) != v2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert {serve(client) for _ in range(20)} == {v2}

            rolled_at = time.monotonic()
            release = manager.rollback(MODEL, "prod", actor="bob", reason="preview looked wrong")
            assert (release.version, release.outcome) == (v2, "rolled_back")
            while serve(client) != v1:
                time.sleep(0.02)
            assert time.monotonic() - rolled_at < 1.0  # already loaded: effective within a poll
            assert manager.registry.alias_version(MODEL, "prod") == v1

            second = manager.start(MODEL, v2, "prod", spec, actor="alice")
            time.sleep(1.0)
            manager.tick()
            assert manager.rollout(second).step_index == 1
            deadline = time.monotonic() + 30
            while manager.rollout(second).state != "succeeded":
                assert time.monotonic() < deadline, manager.status(MODEL, "prod").next_move
                serve(client)
                manager.tick()
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
        deadline = time.monotonic() + 60
        index = 0
        while manager.rollout(rollout_id).state == "progressing":
            assert time.monotonic() < deadline, manager.status(MODEL, "prod").next_move
            for _ in range(10):
                body = requests[index % len(requests)]
                index += 1
                reply = client.post(f"/v1/models/{MODEL}/invocations", json=body)
                assert reply.headers["x-model-version"] == serving  # the shadow answers nobody
            time.sleep(0.2)
            manager.tick()

    spec = load_spec({"strategy": {"shadow": {"min_requests": 60, "max_disagreement": 0.1}}})
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
            assert (gate["test"], gate["verdict"]) == ("disagreement_binomial", "pass")
            assert judged.evidence["n_canary"] >= 60
            assert "recommendation: promote" in judged.reason
            assert manager.approve(MODEL, "prod", actor="bob").state == "succeeded"
            PUBLIC.update(requests[0])
            deadline = time.monotonic() + 30
            while serve(client) != v2:  # the router applies the promoted plan
                assert time.monotonic() < deadline
                time.sleep(0.02)

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
        deadline = time.monotonic() + 90
        index = 0
        while manager.rollout(rollout_id).active:
            assert time.monotonic() < deadline, manager.status(MODEL, "prod").next_move
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
            assert client.post("/v1/feedback", json=feedback).status_code == 202
            time.sleep(0.3)  # the router writes its prediction log in batches
            manager.tick()

    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        wait_ready(router_url)
        with httpx.Client(base_url=router_url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while not client.get("/v1/models").json()["models"]:
                assert time.monotonic() < deadline, "the router did not load the release"
                time.sleep(0.05)
            good = manager.start(MODEL, v2, "prod", spec, actor="alice")
            drive(good, client)
            assert manager.rollout(good).state == "succeeded", manager.rollout(good).reason
            weights = [
                e.evidence["weight_pct"]
                for e in manager.events(good)
                if e.evidence and e.evidence["kind"] == "step"
            ]
            assert weights[-2:] == [50, 100]
            deadline = time.monotonic() + 30
            while client.get("/v1/models").json()["models"][0]["baseline_version"] != v2:
                assert time.monotonic() < deadline
                time.sleep(0.05)

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
            "analysis": {"gates": [{"output_drift": {"method": "chi_square", "min_n": 50}}]},
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
            deadline = time.monotonic() + 30
            while serve_pinned(client, pin) != 200:  # v3 staged at 0%: pinning only
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for i in range(len(rows)):  # the same rows, publicly and pinned to the candidate
                one = split(rows.iloc[[i]])
                public = client.post(f"/v1/models/{MODEL}/invocations", json=one)
                pinned = client.post(f"/v1/models/{MODEL}/invocations", json=one, headers=pin)
                assert public.headers["x-model-version"] == v1, public.text
                assert pinned.headers["x-model-version"] == v3, pinned.text
            deadline = time.monotonic() + 30
            while manager.rollout(broken).state == "progressing":
                assert time.monotonic() < deadline, manager.status(MODEL, "prod").next_move
                manager.tick()
                time.sleep(0.1)
            assert {serve(client) for _ in range(10)} == {v1}  # the switch never happened
        record = manager.rollout(broken)
        assert record.state == "rolled_back", record.reason
        failed = next(e for e in manager.events(broken) if e.to_state == "rolling_back")
        assert failed.step_index == 0 and failed.evidence is not None
        (gate,) = failed.evidence["gates"]
        assert (gate["gate"], gate["test"], gate["verdict"]) == (
            "output_drift",
            "chi_square",
            "fail",
        )
        assert gate["n_canary"] >= 120 and gate["n_baseline"] >= 100  # some still in flight
        plan = manager.plans.get("prod", MODEL)
        assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    finally:
        manager.close()
