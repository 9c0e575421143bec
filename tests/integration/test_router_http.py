"""The router over real HTTP on loopback, against the demo's MLflow registry and a SQLite store.

One uvicorn server (in a thread, lifespan on) serves the whole module; each test writes the
traffic plan it needs to the store and waits until the router reports it applied, exactly as
the manager and a router in another process interact.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from scipy.stats import chisquare
from sqlalchemy import text

from conftest import MODEL, DemoHome, serving, wait_until
from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from rollout.store.predictions import PredictionLog
from router.app import create_app
from router.config import RouterConfig
from router.service import Router
from router.split import bucket, choose_arm

ENV = "prod"
ROLLOUT = "r-http"
WEIGHT = 30
LABEL_TOKEN = "http-label-writer"
LABELS = {"authorization": f"Bearer {LABEL_TOKEN}"}


@dataclass
class Served:
    client: httpx.Client
    router: Router
    plans: SqlPlanStore
    log: PredictionLog
    rows: pd.DataFrame
    expected: dict[str, list[Any]]  # version → mlflow.pyfunc's predictions for ``rows``

    def put(self, **changes: Any) -> TrafficPlan:
        """Write a plan (default: v1 baseline, v2 canary at 30%) and wait until it serves."""
        fields: dict[str, Any] = {
            "baseline_version": "1",
            "canary_version": "2",
            "canary_weight_pct": WEIGHT,
            "rollout_id": ROLLOUT,
        }
        fields.update(changes)
        wanted = TrafficPlan(ENV, MODEL, **fields)
        current = self.plans.get(ENV, MODEL)
        if current is not None and replace(current, generation=0) == wanted:
            return current  # already serving it (the router applies every plan it reads)
        stored = self.plans.put(wanted)
        wait_until(
            lambda: [m["generation"] for m in self.client.get("/v1/models").json()["models"]],
            f"the router to apply generation {stored.generation}",
            until=lambda generations: generations == [stored.generation],
        )
        return stored

    def post(self, body: Any, path: str = "/invocations", **headers: str) -> httpx.Response:
        if isinstance(body, str | bytes):
            return self.client.post(path, content=body, headers=headers)
        return self.client.post(path, json=body, headers=headers)


@contextlib.contextmanager
def _ready_router(app: Any) -> Iterator[httpx.Client]:
    """``app`` served on loopback (conftest's ``serving``), once ``/readyz`` says its plan is
    loaded."""
    with serving(app) as client:
        wait_until(
            lambda: client.get("/readyz"),
            "the router to load its plan",
            until=lambda ready: ready.status_code == 200,
            interval_s=0.05,
        )
        yield client


@pytest.fixture(scope="module")
def served(demo_home: DemoHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store_url = f"sqlite:///{tmp_path_factory.mktemp('router-http') / 'store.db'}"
    engine = open_engine(store_url)
    plans = SqlPlanStore(engine)
    plans.put(TrafficPlan(ENV, MODEL, "1", "2", WEIGHT, rollout_id=ROLLOUT))
    config = RouterConfig(
        store_url=store_url,
        registry_uri=demo_home.settings.registry_uri,
        artifact_root=demo_home.settings.artifact_root,
        environment=ENV,
        log_flush_s=0.1,
        label_token_sha256=(hashlib.sha256(LABEL_TOKEN.encode()).hexdigest(),),
        request_id_key="http-test-request-id-key",
    )
    app = create_app(config)
    rows = demo_home.data.serve_X.head(5)
    expected = {
        v: mlflow.pyfunc.load_model(f"models:/{MODEL}/{v}").predict(rows).tolist()
        for v in ("1", "2")
    }
    with _ready_router(app) as client:
        yield Served(client, app.state.router, plans, PredictionLog(engine), rows, expected)


@pytest.fixture
def plan(served: Served) -> TrafficPlan:
    """The default plan, (re)applied before the test."""
    return served.put()


def _key(arm: str, salt: str = ROLLOUT, weight: int = WEIGHT) -> str:
    """A sticky key that lands on ``arm`` at ``weight``."""
    for n in range(1000):
        key = f"user-{n}"
        if choose_arm(weight, key, salt=salt) == arm:
            return key
    raise AssertionError("no key found")


def _bodies(rows: pd.DataFrame) -> dict[str, tuple[str | dict[str, Any], str]]:
    records = rows.to_dict(orient="records")
    return {
        "dataframe_split": ({"dataframe_split": rows.to_dict(orient="split")}, "application/json"),
        "dataframe_records": ({"dataframe_records": records}, "application/json"),
        "instances": ({"instances": records}, "application/json"),
        "inputs-records": ({"inputs": records}, "application/json"),
        "inputs-columns": ({"inputs": rows.to_dict(orient="list")}, "application/json"),
        "csv": (rows.to_csv(index=False), "text/csv"),
    }


@pytest.mark.parametrize(
    "fmt",
    [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs-records",
        "inputs-columns",
        "csv",
    ],
)
def test_every_format_returns_what_mlflow_predicts(
    served: Served, plan: TrafficPlan, fmt: str
) -> None:
    body, content_type = _bodies(served.rows)[fmt]
    for arm, version in (("baseline", "1"), ("canary", "2")):
        reply = served.post(body, **{"content-type": content_type, "x-rollout-key": _key(arm)})
        assert reply.status_code == 200, reply.text
        assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == (arm, version)
        assert reply.json() == {"predictions": served.expected[version]}


def test_reply_headers(served: Served, plan: TrafficPlan) -> None:
    given = served.post(
        {"dataframe_records": served.rows.head(1).to_dict(orient="records")},
        **{"x-request-id": "client-chosen-id"},
    )
    # The router's own signed id; the caller's id comes back beside it.
    assert given.headers["x-client-request-id"] == "client-chosen-id"
    assert served.router.request_ids.issued_at(given.headers["x-request-id"]) > 0
    fresh = served.post({"dataframe_records": served.rows.head(1).to_dict(orient="records")})
    assert len(fresh.headers["x-request-id"]) == 64 and "x-client-request-id" not in fresh.headers
    for reply in (given, fresh):
        assert reply.headers["x-model-name"] == MODEL
        assert reply.headers["x-model-version"] in ("1", "2")
        assert reply.headers["x-arm"] in ("baseline", "canary")
        assert reply.headers["x-rollout-id"] == ROLLOUT
        assert reply.headers["x-plan-generation"] == str(plan.generation)
    served.put(rollout_id=None, canary_version=None, canary_weight_pct=0)
    reply = served.post({"dataframe_records": served.rows.head(1).to_dict(orient="records")})
    assert (reply.headers["x-rollout-id"], reply.headers["x-arm"]) == ("", "baseline")


def test_arm_shares_match_the_weight_and_keys_stick(served: Served, plan: TrafficPlan) -> None:
    body = {"dataframe_split": served.rows.head(1).to_dict(orient="split")}
    n = 400
    arms = [served.post(body).headers["x-arm"] for _ in range(n)]
    canary = arms.count("canary")
    assert chisquare([n - canary, canary], [n * 0.7, n * 0.3]).pvalue > 0.001
    for n_key in range(40):
        key = f"sticky-{n_key}"
        expected = "canary" if bucket(key, ROLLOUT) < WEIGHT else "baseline"
        assert {served.post(body, **{"x-rollout-key": key}).headers["x-arm"] for _ in range(2)} == {
            expected
        }


def test_records_and_feedback_land_in_the_store(served: Served) -> None:
    rollout_id = f"r-{uuid.uuid4().hex[:8]}"
    served.put(rollout_id=rollout_id)
    records = served.rows.to_dict(orient="records")
    sent = [served.post({"dataframe_records": records[:2]}) for _ in range(8)]
    replies = {reply.headers["x-request-id"]: reply for reply in sent}
    ids = list(replies)
    broken = [{k: v for k, v in r.items() if k != "mean radius"} for r in records[:1]]
    bad = served.post({"dataframe_records": broken})
    assert bad.status_code == 422
    one = served.client.post(
        "/v1/feedback", json={"request_id": ids[0], "label": [1, 0]}, headers=LABELS
    )
    many = served.client.post(
        "/v1/feedback",
        json=[{"request_id": rid, "label": [0, 1]} for rid in ids[1:4]],
        headers=LABELS,
    )
    assert (one.status_code, many.status_code) == (202, 202)
    assert served.router.flush(10)

    stored = {r.request_id: r for r in served.log.recent(ENV, MODEL, limit=5000)}
    for rid, reply in replies.items():
        record = stored[rid]
        assert record.version == reply.headers["x-model-version"]
        assert record.arm == reply.headers["x-arm"]
        assert record.rollout_id == rollout_id
        assert record.plan_generation == int(reply.headers["x-plan-generation"])
        assert record.status_code == 200 and record.error is None
        assert record.output is not None and record.features is not None
        assert pd.read_json(io.StringIO(record.features)).shape == (2, 30)
        assert json.loads(record.output) == reply.json()["predictions"]
        assert record.latency_ms > 0
    # Input both versions refuse is the client's error: answered 422, recorded for no arm.
    assert "'mean radius'" in bad.json()["message"]
    assert bad.headers["x-request-id"] not in stored

    summary = served.log.fold(rollout_id, since_ts=0.0)
    assert sum(c.n_requests for c in summary.arms.values()) == 8
    assert sum(c.n_errors for c in summary.arms.values()) == 0
    assert sum(summary.labels.labelled.values()) == 8  # 4 requests x 2 rows


def test_a_store_that_refuses_records_costs_records_not_requests(
    served: Served, plan: TrafficPlan
) -> None:
    def dropped() -> float:
        for line in served.client.get("/metrics").text.splitlines():
            if line.startswith("rollout_router_prediction_log_dropped_total "):
                return float(line.split()[1])
        raise AssertionError("no dropped-records metric")

    body = {"dataframe_records": served.rows.head(1).to_dict(orient="records")}
    before = dropped()
    with served.log.engine.begin() as conn:
        conn.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
    try:
        assert [served.post(body).status_code for _ in range(3)] == [200, 200, 200]
        assert served.router.flush(10)
        assert dropped() == before + 3
    finally:
        with served.log.engine.begin() as conn:
            conn.execute(text("ALTER TABLE predictions_away RENAME TO predictions"))
    after = served.post(body).headers["x-request-id"]
    assert served.router.flush(10)
    assert dropped() == before + 3
    assert any(r.request_id == after for r in served.log.recent(ENV, MODEL, 50))


def test_a_plan_change_is_served_whole_from_the_poll_that_applies_it(served: Served) -> None:
    """Requests sent meanwhile get the old plan, then the new one: never a mix, never back.
    (How soon after the write is a benchmark figure: ``bench/timings.py``.)"""
    body = {"dataframe_split": served.rows.head(1).to_dict(orient="split")}
    old = served.put(canary_weight_pct=0)
    assert {served.post(body).headers["x-arm"] for _ in range(20)} == {"baseline"}
    new = served.plans.put(TrafficPlan(ENV, MODEL, "1", "2", 100, rollout_id=ROLLOUT))
    seen: list[tuple[int, str]] = []

    def answer() -> int:
        reply = served.post(body)
        assert reply.status_code == 200, reply.text
        seen.append((int(reply.headers["x-plan-generation"]), reply.headers["x-arm"]))
        return seen[-1][0]

    wait_until(answer, f"generation {new.generation} serving", until=lambda g: g == new.generation)
    arms = {old.generation: "baseline", new.generation: "canary"}
    assert all(arm == arms[generation] for generation, arm in seen), seen
    assert [g for g, _ in seen] == sorted(g for g, _ in seen)
    assert served.router.poller.wait_until(
        lambda status: status.active[MODEL].plan.generation == new.generation, 0
    )
    assert {served.post(body).headers["x-arm"] for _ in range(20)} == {"canary"}


def test_replies_name_the_release_of_the_version_that_answered(served: Served) -> None:
    body = {"dataframe_split": served.rows.head(1).to_dict(orient="split")}

    def release(**headers: str) -> tuple[str, str, str | None]:
        reply = served.post(body, **headers)
        assert reply.status_code == 200, reply.text
        return (
            reply.headers["x-arm"],
            reply.headers["x-model-version"],
            reply.headers.get("x-release-id"),
        )

    served.put(baseline_release_id=12)
    assert release(**{"x-rollout-key": _key("baseline")}) == ("baseline", "1", "12")
    assert release(**{"x-rollout-key": _key("canary")}) == ("canary", "2", f"rollout:{ROLLOUT}")
    # The candidate promoted: v2 alone, serving its own release.
    served.put(baseline_version="2", canary_version=None, canary_weight_pct=0, rollout_id=None,
               baseline_release_id=13)  # fmt: skip
    assert {release() for _ in range(5)} == {("baseline", "2", "13")}
    # A plan that does not know its baseline's release: no header, an empty label.
    served.put(canary_version=None, canary_weight_pct=0, rollout_id=None)
    assert {release() for _ in range(3)} == {("baseline", "1", None)}
    metrics = served.client.get("/metrics").text
    for arm, version, label in (
        ("baseline", "1", "12"),
        ("canary", "2", f"rollout:{ROLLOUT}"),
        ("baseline", "2", "13"),
    ):
        assert (
            f'rollout_router_requests_total{{arm="{arm}",model="bc",release="{label}",'
            f'status="200",version="{version}"}}'
        ) in metrics


def test_bad_requests_get_json_errors(served: Served, plan: TrafficPlan) -> None:
    records = served.rows.head(2).to_dict(orient="records")
    missing = [{k: v for k, v in r.items() if k != "worst area"} for r in records]
    cases = [
        (
            served.post(b'{"dataframe_records": [', **{"content-type": "application/json"}),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (served.post({"records": records}), 400, "invalid_format", "exactly one of"),
        (
            served.post({"dataframe_records": missing}),
            422,
            "signature_mismatch",
            "missing column 'worst area'",
        ),
        (
            served.post({"dataframe_records": records}, path="/v1/models/fraud/invocations"),
            404,
            "unknown_model",
            "model 'fraud' has no traffic plan",
        ),
        (
            served.post("a,b\n1,2\n", **{"content-type": "text/plain"}),
            415,
            "unsupported_content_type",
            "'text/plain'",
        ),
        (
            served.post(
                b"[" + b"1," * (600 * 1024) + b"1]", **{"content-type": "application/json"}
            ),
            413,
            "payload_too_large",
            "at most 1048576",
        ),
    ]
    for empty in (
        {"dataframe_records": []},
        {"instances": []},
        {"inputs": []},
        {"inputs": {}},
        {"dataframe_split": {"columns": ["worst area"], "data": []}},
    ):  # MLflow answers these with pandas' "Empty DataFrame" text
        fmt = next(iter(empty))
        cases.append((served.post(empty), 400, "empty_input", f"'{fmt}' holds no rows"))
    for reply, status, code, fragment in cases:
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["error_code"] == code
        assert fragment in reply.json()["message"]


def _still_loading(ready: httpx.Response) -> bool:
    return ready.status_code == 200 or ready.json()["not_ready"][0]["reason"] == "loading"


def test_a_version_that_cannot_load_keeps_the_previous_plan(
    served: Served, plan: TrafficPlan
) -> None:
    broken = served.plans.put(TrafficPlan(ENV, MODEL, "1", "99", 50, rollout_id=ROLLOUT))
    # Not ready first says "loading" while the version is fetched, then why it failed.
    ready = wait_until(
        lambda: served.client.get("/readyz"),
        "the load of v99 to fail",
        until=lambda ready: not _still_loading(ready),
        interval_s=0.05,
    )
    assert ready.status_code == 503
    assert served.client.get("/ping").status_code == 404  # as mlflow models serve, not ready
    (cause,) = ready.json()["not_ready"]
    assert (cause["model"], cause["version"]) == (MODEL, "99")
    assert "ModelLoadFailed" in cause["reason"] and "99" in cause["reason"]
    reply = served.post({"dataframe_records": served.rows.head(1).to_dict(orient="records")})
    assert reply.status_code == 200
    assert reply.headers["x-plan-generation"] == str(plan.generation) != str(broken.generation)
    served.put()  # a good plan again: ready again
    assert served.client.get("/readyz").status_code == 200


def test_status_endpoints(served: Served, plan: TrafficPlan) -> None:
    assert served.client.get("/healthz").json() == {"status": "ok"}
    for probe in ("/ping", "/health"):  # mlflow models serve's probes, answered the same way
        reply = served.client.get(probe)
        assert (reply.status_code, reply.text) == (200, "\n")
    assert served.client.get("/version").text == importlib.metadata.version("mlflow")
    models = served.client.get("/v1/models").json()
    (bc,) = models["models"]
    assert (models["environment"], models["default_model"], models["ready"]) == (ENV, MODEL, True)
    assert (bc["generation"], bc["baseline_version"], bc["canary_version"]) == (
        plan.generation,
        "1",
        "2",
    )
    assert [(v["version"], v["weight_pct"], v["loaded"]) for v in bc["versions"]] == [
        ("1", 70, True),
        ("2", 30, True),
    ]
    served.post({"dataframe_records": served.rows.head(1).to_dict(orient="records")})
    metrics = served.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f'rollout_router_plan_generation{{model="bc"}} {plan.generation}.0' in metrics.text
    assert (
        'rollout_router_requests_total{arm="baseline",model="bc",release="",status="200",'
        'version="1"}'
    ) in metrics.text
    assert "rollout_router_prediction_log_dropped_total " in metrics.text


def test_a_rotated_key_verifies_the_old_ids_and_the_old_router_refuses_the_new(
    served: Served, plan: TrafficPlan
) -> None:
    """Halfway through a rotation (router/request_ids.py): a router whose key list is "new,
    old" takes a label for a request the old-key router answered, and signs its own with the
    new key, which a router still holding only the old key refuses (404)."""
    old = served.router.config.request_id_key
    assert old is not None
    rotated = served.router.config.with_changes(request_id_key=f"rotated-key-0123456789,{old}")
    with _ready_router(create_app(rotated)) as client:
        body = {"dataframe_records": served.rows.to_dict(orient="records")[:1]}
        by_old = served.post(body).headers["x-request-id"]
        by_new = client.post("/invocations", json=body).headers["x-request-id"]
        label = {"label": [1]}
        taken = client.post("/v1/feedback", json={"request_id": by_old, **label}, headers=LABELS)
        assert taken.status_code == 202, taken.text
        refused = served.client.post(
            "/v1/feedback", json={"request_id": by_new, **label}, headers=LABELS
        )
        assert refused.status_code == 404
        assert refused.json()["error_code"] == "unknown_request_id"
        own = client.post("/v1/feedback", json={"request_id": by_new, **label}, headers=LABELS)
        assert own.status_code == 202, own.text
