"""The HTTP contract, error by error, on an app built from in-memory parts.

Plans come from an ``InMemoryPlanStore``, records go to an ``InMemoryPredictionLog`` and the
versions are real MLflow models loaded from directories; the app runs under uvicorn on loopback.
(The same contract against the MLflow registry and a SQL store is in
``tests/integration/test_router_http.py``.)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from contract.clock import ManualClock
from contract.plans import InMemoryPlanStore, TrafficPlan
from contract.records import InMemoryPredictionLog
from rollout.errors import RegistryError
from router.app import create_app
from router.config import RouterConfig
from router.predictor import Predictor
from router.request_ids import RequestIds
from router.service import Router
from router.split import choose_arm

ENV = "prod"
RECORD = {"radius": 11.0, "count": 3, "site": "b"}
BODY = {"dataframe_records": [RECORD]}
LABEL_TOKEN = "label-writer-token"
OTHER_LABEL_TOKEN = "another-label-writer"
LABEL_DIGESTS = tuple(
    hashlib.sha256(t.encode()).hexdigest() for t in (LABEL_TOKEN, OTHER_LABEL_TOKEN)
)
ID_KEY = "k" * 32
WRITER = {"authorization": f"Bearer {LABEL_TOKEN}"}


class DirLoader:
    """Versions from model directories; a version without one fails like the registry does."""

    def __init__(self, dirs: dict[tuple[str, str], Path]) -> None:
        self.dirs = dirs
        self.cache: dict[Path, Any] = {}

    def load(self, model: str, version: str) -> Predictor:
        path = self.dirs.get((model, version))
        if path is None:
            raise RegistryError(f"model {model!r} version {version!r} not found")
        if path not in self.cache:
            self.cache[path] = mlflow.pyfunc.load_model(str(path))
        predictor = Predictor(model, version, self.cache[path])
        predictor.warm()
        return predictor


@dataclass
class Harness:
    client: httpx.Client
    router: Router
    source: InMemoryPlanStore
    sink: InMemoryPredictionLog

    def wait_ready(self) -> None:
        assert self.router.poller.wait_until(lambda s: not s.not_ready(), timeout=30)

    def put(self, plan: TrafficPlan) -> TrafficPlan:
        stored = self.source.put(plan)
        assert self.router.poller.wait_until(
            lambda s: s.latest.get(plan.model) == stored, timeout=10
        )
        return stored


def _harness(
    serve: Any, pipelines: dict[str, Path], failing_dir: Path, **config: Any
) -> Iterator[Harness]:
    source = InMemoryPlanStore(
        [
            TrafficPlan(ENV, "bc", "1", "2", 30, rollout_id="r1"),
            TrafficPlan(ENV, "boom", "1"),
        ]
    )
    loader = DirLoader(
        {
            ("bc", "1"): pipelines["labels"],
            ("bc", "2"): pipelines["proba"],
            ("boom", "1"): failing_dir,
        }
    )
    sink = InMemoryPredictionLog()
    config = {"label_token_sha256": LABEL_DIGESTS, "request_id_key": ID_KEY, **config}
    settings = RouterConfig(
        store_url="sqlite://", registry_uri="unused", plan_poll_s=0.05, seed=3, **config
    )
    router = Router(settings, plans=source, loader=loader, predictions=sink, feedback=sink)
    with serve(create_app(settings, router)) as client:
        harness = Harness(client, router, source, sink)
        harness.wait_ready()
        yield harness


@pytest.fixture
def app(serve: Any, pipelines: dict[str, Path], failing_dir: Path) -> Iterator[Harness]:
    yield from _harness(serve, pipelines, failing_dir, max_body_bytes=4096)


@pytest.fixture(scope="module")
def shared_app(serve: Any, pipelines: dict[str, Path], failing_dir: Path) -> Iterator[Harness]:
    """One app for the tests that change nothing but counters."""
    yield from _harness(serve, pipelines, failing_dir, max_body_bytes=4096)


def _post(app: Harness, path: str, body: object, **headers: str) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    if path == "/v1/feedback":
        headers.setdefault("authorization", WRITER["authorization"])
    return app.client.post(path, content=content, headers=headers)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "fragment"),
    [
        ("/v1/models/bc/invocations", b"{oops", {}, 400, "malformed_json", "line 1 column 2"),
        ("/v1/models/bc/invocations", {"rows": []}, {}, 400, "invalid_format", "'rows'"),
        (
            "/v1/models/bc/invocations",
            {"inputs": [], "instances": []},
            {},
            400,
            "invalid_format",
            "exactly one of",
        ),
        (
            "/v1/models/nope/invocations",
            BODY,
            {},
            404,
            "unknown_model",
            "model 'nope' has no traffic plan in environment 'prod' (models served: bc, boom)",
        ),
        ("/invocations", BODY, {}, 404, "no_default_model", "this router serves bc, boom"),
        ("/v1/models/bc/invocations", b"x" * 5000, {}, 413, "payload_too_large", "at most 4096"),
        (
            "/v1/models/bc/invocations",
            BODY,
            {"content-type": "text/plain"},
            415,
            "unsupported_content_type",
            "'text/plain'",
        ),
        (
            "/v1/models/bc/invocations",
            {"dataframe_records": [{"radius": 1.0, "site": "a"}]},
            {},
            422,
            "signature_mismatch",
            "missing column 'count'",
        ),
        (
            "/v1/models/bc/invocations",
            {"dataframe_records": [{"radius": "wide", "count": 1, "site": "a"}]},
            {},
            422,
            "signature_mismatch",
            "column 'radius' of bc v",
        ),
        (
            "/v1/models/bc/invocations",
            BODY,
            {"x-model-version": "2"},
            403,
            "pinning_not_allowed",
            "needs a token allowed to pin",
        ),
        (
            "/v1/models/bc/invocations",
            BODY,
            {"x-request-id": "r" * 65},
            400,
            "invalid_request_id",
            "at most 64",
        ),
        (
            "/v1/models/boom/invocations",
            {"inputs": {"x": [-1.0]}},
            {},
            500,
            "model_error",
            "boom v1 failed: RuntimeError (incident ",
        ),
        ("/v1/nothing", BODY, {}, 404, "not_found", "POST /v1/nothing"),
        ("/v1/feedback", [{"label": 1}], {}, 400, "invalid_feedback", "item 0: 'request_id'"),
        ("/v1/feedback", b"[", {}, 400, "malformed_json", "not valid JSON"),
    ],
)
def test_errors_are_json_naming_the_problem(
    shared_app: Harness,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
    code: str,
    fragment: str,
) -> None:
    reply = _post(shared_app, path, body, **headers)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json()) == {"error_code", "message"}
    assert reply.json()["error_code"] == code
    assert fragment in reply.json()["message"]


def test_a_reply_carries_the_routing_headers_and_one_record(app: Harness) -> None:
    reply = _post(app, "/v1/models/bc/invocations", BODY, **{"x-request-id": "req-1"})
    assert reply.status_code == 200
    version = reply.headers["x-model-version"]
    # The router issues its own signed id; the caller's comes back as x-client-request-id.
    request_id = reply.headers["x-request-id"]
    assert len(request_id) == 64 and request_id != "req-1"
    assert app.router.request_ids.issued_at(request_id) > 0
    assert reply.headers["x-client-request-id"] == "req-1"
    assert reply.headers["x-model-name"] == "bc"
    assert reply.headers["x-arm"] == {"1": "baseline", "2": "canary"}[version]
    assert reply.headers["x-rollout-id"] == "r1"
    assert reply.headers["x-plan-generation"] == "1"
    assert app.router.flush()
    (record,) = app.sink.records
    assert (record.request_id, record.model, record.version, record.arm) == (
        request_id,
        "bc",
        version,
        reply.headers["x-arm"],
    )
    assert (record.rollout_id, record.plan_generation, record.status_code) == ("r1", 1, 200)
    assert json.loads(record.features or "") == [RECORD]
    assert json.loads(record.output or "") == reply.json()["predictions"]
    assert record.error is None and record.latency_ms > 0


def test_errors_after_routing_are_recorded_with_the_version(app: Harness) -> None:
    reply = _post(app, "/v1/models/boom/invocations", {"inputs": {"x": [-2.0]}})
    assert reply.status_code == 500
    assert reply.headers["x-model-version"] == "1"
    assert reply.headers["x-rollout-id"] == ""
    assert app.router.flush()
    (record,) = app.sink.records
    assert record.status_code == 500 and record.output is None
    assert record.error == "model_error: boom v1 failed: RuntimeError: negative x is not supported"


def test_the_default_model_serves_invocations(
    serve: Any, pipelines: dict[str, Path], failing_dir: Path
) -> None:
    for harness in _harness(serve, pipelines, failing_dir, default_model="boom"):
        reply = _post(harness, "/invocations", {"inputs": {"x": [2.0]}})
        assert reply.status_code == 200
        assert reply.json() == {"predictions": [{"x": 4.0}]}
        assert reply.headers["x-model-name"] == "boom"


def test_features_are_kept_on_the_sampled_share_only(
    serve: Any, pipelines: dict[str, Path], failing_dir: Path
) -> None:
    for harness in _harness(serve, pipelines, failing_dir, log_sample_rate=0.0):
        assert _post(harness, "/v1/models/bc/invocations", BODY).status_code == 200
        assert harness.router.flush()
        (record,) = harness.sink.records
        assert record.features is None and record.output is not None


def test_field_sticky_rule_routes_by_the_first_row(app: Harness) -> None:
    plan = app.put(TrafficPlan(ENV, "bc", "1", "2", 50, sticky_key="field:site", rollout_id="r2"))
    for site in ("a", "b", "c", "d", "e", "f"):
        body = {"dataframe_records": [dict(RECORD, site=site)]}
        arms = {_post(app, "/v1/models/bc/invocations", body).headers["x-arm"] for _ in range(3)}
        assert arms == {choose_arm(50, site, salt="r2")}
        assert plan.generation == 2


def test_feedback_is_accepted_one_or_many(app: Harness) -> None:
    rid1, rid2 = (
        _post(app, "/v1/models/bc/invocations", BODY).headers["x-request-id"] for _ in "ab"
    )
    one = _post(app, "/v1/feedback", {"request_id": rid1, "label": 1})
    many = _post(app, "/v1/feedback", [{"request_id": rid2, "label": [0, 1]}])
    assert (one.status_code, one.json()) == (202, {"accepted": 1})
    assert (many.status_code, many.json()) == (202, {"accepted": 1})
    writer = "sha256:" + LABEL_DIGESTS[0][:16]
    assert [(f.request_id, f.label, f.writer) for f in app.sink.labels] == [
        (rid1, 1, writer),
        (rid2, [0, 1], writer),
    ]


def test_models_and_readiness_follow_the_plans(app: Harness) -> None:
    assert app.client.get("/healthz").json() == {"status": "ok"}
    assert app.client.get("/readyz").json() == {"ready": True, "generations": {"bc": 1, "boom": 1}}
    models = app.client.get("/v1/models").json()
    assert models["ready"] is True and models["default_model"] is None
    bc = models["models"][0]
    assert (bc["model"], bc["generation"], bc["canary_weight_pct"]) == ("bc", 1, 30)
    assert [(v["version"], v["role"], v["weight_pct"], v["loaded"]) for v in bc["versions"]] == [
        ("1", "baseline", 70, True),
        ("2", "canary", 30, True),
    ]
    # A plan whose canary cannot load: not ready, naming it, and generation 1 keeps serving.
    app.put(TrafficPlan(ENV, "bc", "1", "9", 50, rollout_id="r1"))
    ready = app.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error_code"] == "not_ready"
    assert ready.json()["not_ready"] == [
        {"model": "bc", "version": "9", "reason": "RegistryError: model 'bc' version '9' not found"}
    ]
    assert "bc v9: RegistryError" in ready.json()["message"]
    served = _post(app, "/v1/models/bc/invocations", BODY)
    assert served.status_code == 200 and served.headers["x-plan-generation"] == "1"
    bc = app.client.get("/v1/models").json()["models"][0]
    assert (bc["generation"], bc["latest_generation"], bc["ready"]) == (1, 2, False)


def test_no_plan_at_all_is_503(serve: Any) -> None:
    settings = RouterConfig(store_url="sqlite://", registry_uri="unused", plan_poll_s=0.05)
    sink = InMemoryPredictionLog()
    router = Router(settings, plans=InMemoryPlanStore(), loader=DirLoader({}), predictions=sink)
    with serve(create_app(settings, router)) as client:
        assert router.poller.wait_until(lambda s: s.polled, timeout=5)
        reply = client.post("/invocations", json=BODY)
        assert (reply.status_code, reply.json()["error_code"]) == (503, "no_plan")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["message"] == "not ready: no traffic plan for environment 'prod'"


def test_metrics_count_requests_and_export_the_plan(app: Harness) -> None:
    for _ in range(3):
        _post(app, "/v1/models/boom/invocations", {"inputs": {"x": [1.0]}})
    _post(app, "/v1/models/nope/invocations", BODY)
    assert app.router.flush()
    text = app.client.get("/metrics").text
    assert (
        'rollout_router_requests_total{arm="baseline",model="boom",release="",'
        'status="200",version="1"} 3.0' in text
    )
    assert (
        'rollout_router_requests_total{arm="",model="",release="",status="404",version=""} 1.0'
        in text
    )
    assert 'rollout_router_plan_generation{model="bc"} 1.0' in text
    assert 'rollout_router_canary_weight_pct{model="bc"} 30.0' in text
    assert 'rollout_router_version_loaded{model="bc",version="2"} 1.0' in text
    assert "rollout_router_prediction_log_written_total 3.0" in text
    assert "rollout_router_prediction_log_dropped_total 0.0" in text
    assert "rollout_router_request_duration_seconds_bucket" in text


def test_feedback_checks_the_writer_before_reading_the_body(app: Harness) -> None:
    rid = _post(app, "/v1/models/bc/invocations", BODY).headers["x-request-id"]
    huge = json.dumps([{"request_id": rid, "label": 1}] * 50_000).encode()  # ~3.5 MB
    for headers in ({"authorization": ""}, {"authorization": "Bearer guessed"}):
        reply = _post(app, "/v1/feedback", huge, **headers)
        assert (reply.status_code, reply.json()["error_code"]) == (401, "unauthorized")
    reply = _post(app, "/v1/feedback", huge)
    assert (reply.status_code, reply.json()["error_code"]) == (413, "payload_too_large")
    assert "at most 524288 (ROLLOUT_LABEL_MAX_BODY_BYTES)" in reply.json()["message"]
    assert app.sink.labels == []


def test_feedback_over_http_refuses_forged_expired_and_overwriting_labels(app: Harness) -> None:
    rid = _post(app, "/v1/models/bc/invocations", BODY).headers["x-request-id"]
    other = {"authorization": f"Bearer {OTHER_LABEL_TOKEN}"}
    old = RequestIds(ID_KEY.encode(), ManualClock(time.time() - 15 * 86_400)).issue()
    forged = rid[:-1] + ("0" if rid[-1] != "0" else "1")
    cases = [
        ({"request_id": forged, "label": 0}, {}, 404, "unknown_request_id"),
        ({"request_id": "req-1", "label": 0}, {}, 404, "unknown_request_id"),
        ({"request_id": old, "label": 0}, {}, 410, "label_expired"),
        ({"request_id": rid, "label": 1}, {}, 202, None),
        ({"request_id": rid, "label": 0}, other, 409, "label_conflict"),
        ({"request_id": rid, "label": 0}, {}, 202, None),
    ]  # fmt: skip
    for body, headers, status, code in cases:
        reply = _post(app, "/v1/feedback", body, **headers)
        assert reply.status_code == status, (body, reply.text)
        if code is not None:
            assert reply.json()["error_code"] == code
    assert [(f.request_id, f.label) for f in app.sink.labels] == [(rid, 0)]
    assert [f.label for f, _ in app.sink.history] == [1]


def test_a_router_with_no_label_writers_refuses_labels(
    serve: Any, pipelines: dict[str, Path], failing_dir: Path
) -> None:
    for harness in _harness(serve, pipelines, failing_dir, label_token_sha256=()):
        rid = _post(harness, "/v1/models/bc/invocations", BODY).headers["x-request-id"]
        reply = _post(harness, "/v1/feedback", {"request_id": rid, "label": 1})
        assert (reply.status_code, reply.json()["error_code"]) == (403, "labels_not_configured")
        assert harness.sink.labels == []
