"""Pinning, shadow mirroring, canary failover and micro-batching, over HTTP on loopback.

The app is built from in-memory plans and sinks and real MLflow models saved to directories
(``conftest``): ``num`` is a LogisticRegression on numeric columns (the numpy road), ``tricky``
a pyfunc that raises, returns a malformed reply or sleeps on chosen inputs, ``boom`` a pyfunc
that doubles ``x`` (and raises on negative values).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from contract.plans import InMemoryPlanStore, TrafficPlan
from contract.records import InMemoryPredictionLog
from router.app import create_app
from router.config import RouterConfig
from router.predictor import Predictor
from router.service import Router

ENV = "prod"
TOKEN = "let-me-pin"
OTHER_TOKEN = "not-on-the-list"
NUM_ROW = {"a": 0.5, "b": 4.0, "n": 3}


class DirLoader:
    def __init__(self, dirs: dict[tuple[str, str], Path]) -> None:
        self.dirs = dirs

    def load(self, model: str, version: str) -> Predictor:
        predictor = Predictor(
            model, version, mlflow.pyfunc.load_model(str(self.dirs[model, version]))
        )
        predictor.warm()
        return predictor


@dataclass
class App:
    client: httpx.Client
    router: Router
    source: InMemoryPlanStore
    sink: InMemoryPredictionLog

    def post(self, model: str, body: Any, **headers: str) -> httpx.Response:
        return self.client.post(f"/v1/models/{model}/invocations", json=body, headers=headers)

    def records(self) -> list[Any]:
        assert self.router.flush()
        return list(self.sink.records)


@pytest.fixture
def app(serve: Any, numeric_dir: Path, tricky_dir: Path, failing_dir: Path) -> Iterator[App]:
    source = InMemoryPlanStore(
        [
            # boom: v1 doubles x, v2 (tricky) is its canary at 100%; num v3 shadows num
            TrafficPlan(ENV, "boom", "1", "2", 100, rollout_id="r-boom", baseline_release_id=7),
            TrafficPlan(ENV, "slow", "2"),
            TrafficPlan(
                ENV,
                "num",
                "1",
                "2",
                50,
                shadow_version="3",
                shadow_fraction=1.0,
                baseline_release_id=4,
            ),
            # mixed: the baseline takes x (double), its canary (100%) a, b and n
            TrafficPlan(ENV, "mixed", "1", "2", 100, rollout_id="r-mixed"),
        ]
    )
    loader = DirLoader(
        {
            ("boom", "1"): failing_dir,
            ("boom", "2"): tricky_dir,
            ("slow", "2"): tricky_dir,
            ("num", "1"): numeric_dir,
            ("num", "2"): numeric_dir,
            ("num", "3"): numeric_dir,
            ("mixed", "1"): failing_dir,
            ("mixed", "2"): numeric_dir,
        }
    )
    sink = InMemoryPredictionLog()
    settings = RouterConfig(
        store_url="sqlite://",
        registry_uri="unused",
        plan_poll_s=0.05,
        seed=5,
        predict_timeout_s=0.5,
        pin_token_sha256=(hashlib.sha256(TOKEN.encode()).hexdigest(),),
        batch_max_size=64,
    )
    router = Router(settings, plans=source, loader=loader, predictions=sink, feedback=sink)
    with serve(create_app(settings, router)) as client:
        assert router.poller.wait_until(lambda s: not s.not_ready(), timeout=60)
        yield App(client, router, source, sink)


# -- pinning --
@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("Basic abc", 401, "unauthorized"),
        ("Bearer", 401, "unauthorized"),
        (f"Bearer {OTHER_TOKEN}", 403, "pinning_not_allowed"),
    ],
)
def test_pinning_needs_a_token_allowed_to_pin(
    app: App, authorization: str | None, status: int, code: str
) -> None:
    headers = {"x-model-version": "1"}
    if authorization is not None:
        headers["authorization"] = authorization
    reply = app.post("num", {"dataframe_records": [NUM_ROW]}, **headers)
    assert (reply.status_code, reply.json()["error_code"]) == (status, code)


def test_a_pinned_request_is_served_by_that_version(app: App) -> None:
    # num's plan knows v1's release (4); v2 and v3 are under no rollout, so theirs is unknown.
    for version, release in (("1", "4"), ("2", None), ("3", None)):
        reply = app.post(
            "num",
            {"dataframe_records": [NUM_ROW]},
            **{"x-model-version": version, "authorization": f"Bearer {TOKEN}"},
        )
        assert reply.status_code == 200
        assert (reply.headers["x-model-version"], reply.headers["x-arm"]) == (version, "pinned")
        assert reply.headers.get("x-release-id") == release
    unknown = app.post(
        "num",
        {"dataframe_records": [NUM_ROW]},
        **{"x-model-version": "9", "authorization": f"Bearer {TOKEN}"},
    )
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "unknown_version")
    assert "'9' is not a version of model 'num'" in unknown.json()["message"]


# -- shadow --
def test_shadow_mirrors_after_the_reply_and_records_the_pair(app: App) -> None:
    reply = app.post("num", {"dataframe_records": [NUM_ROW]})
    assert reply.status_code == 200
    request_id = reply.headers["x-request-id"]
    assert reply.headers["x-arm"] in ("baseline", "canary")
    pair: list[Any] = []
    deadline = time.monotonic() + 10
    while len(pair) < 2 and time.monotonic() < deadline:  # the mirror runs after the reply
        pair = [r for r in app.records() if r.request_id == request_id]
        time.sleep(0.01)
    served, shadow = sorted(pair, key=lambda r: r.arm == "shadow")
    assert (shadow.arm, shadow.version, shadow.status_code) == ("shadow", "3", 200)
    assert json.loads(shadow.output or "") == reply.json()["predictions"]
    assert served.arm == reply.headers["x-arm"]
    assert json.loads(shadow.features or "") == [NUM_ROW]


# -- failover --
@pytest.mark.parametrize(
    ("x", "error"),
    [
        (13.0, "model_error: boom v2 failed: RuntimeError: 13 is unlucky"),
        (7.0, "model_error: boom v2 returned 2 predictions for 1 input rows"),
        (1000.0, "model_timeout: boom v2 did not answer within 0.5s"),
    ],
)
def test_a_failing_canary_is_answered_by_the_baseline(app: App, x: float, error: str) -> None:
    reply = app.post("boom", {"inputs": {"x": [x]}})
    assert reply.status_code == 200
    assert reply.json() == {"predictions": [{"x": 2 * x}]}
    assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == ("failover", "1")
    assert reply.headers["x-release-id"] == "7"  # the baseline's release, not the canary's
    request_id = reply.headers["x-request-id"]
    records = {r.arm: r for r in app.records() if r.request_id == request_id}
    assert set(records) == {"canary", "failover"}  # the gates leave the failover out
    assert (records["canary"].error or "").startswith(error)
    assert records["canary"].status_code in (500, 504)
    assert records["failover"].status_code == 200 and records["failover"].error is None
    metrics = app.client.get("/metrics").text
    assert 'rollout_router_canary_failovers_total{model="boom",version="2"} 1.0' in metrics
    status = records["canary"].status_code
    assert (
        f'rollout_router_requests_total{{arm="canary",model="boom",release="rollout:r-boom",'
        f'status="{status}",version="2"}} 1.0'
    ) in metrics
    assert (
        'rollout_router_requests_total{arm="failover",model="boom",release="7",'
        'status="200",version="1"} 1.0'
    ) in metrics


def test_a_failing_baseline_is_a_clear_5xx(app: App) -> None:
    raised = app.post("boom", {"inputs": {"x": [-13.0]}})  # both versions raise on it
    assert (raised.status_code, raised.json()["error_code"]) == (500, "model_error")
    # The client hears the version and the exception's type, with an incident id; the model's
    # own words (which may name internal hosts) are only in the log and the prediction record.
    message = raised.json()["message"]
    assert re.fullmatch(r"boom v1 failed: RuntimeError \(incident [0-9a-f]{12}\)", message)
    slow = app.post("slow", {"inputs": {"x": [1500.0]}})
    assert (slow.status_code, slow.json()["error_code"]) == (504, "model_timeout")
    assert slow.json()["message"] == (
        "slow v2 did not answer within 0.5s (ROLLOUT_PREDICT_TIMEOUT_S)"
    )


# -- the client's errors are nobody's failure --
@pytest.mark.parametrize(
    ("model", "body", "status", "code"),
    [
        ("boom", {"inputs": {"x": ["abc"]}}, 422, "signature_mismatch"),  # both: not a double
        ("boom", {"inputs": {"y": [1.0]}}, 422, "signature_mismatch"),  # both: no such column
        ("mixed", {"dataframe_records": [{"zzz": 1.0}]}, 422, "signature_mismatch"),
        ("boom", {"dataframe_split": {"index": [1, 2], "data": [[1.0]]}}, 400, "invalid_format"),
        ("boom", {"inputs": {"x": [1.0]}, "params": 3}, 400, "invalid_format"),
    ],
)
def test_input_every_version_refuses_is_the_clients_and_records_nothing(
    app: App, model: str, body: Any, status: int, code: str
) -> None:
    reply = app.post(model, body)
    assert (reply.status_code, reply.json()["error_code"]) == (status, code), reply.text
    if status == 422:  # the version the split chose refused it, and says so
        assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == ("canary", "2")
    request_id = reply.headers["x-request-id"]  # the router's own id, signed
    assert len(request_id) == 64
    assert [r for r in app.records() if r.request_id == request_id] == []
    metrics = app.client.get("/metrics").text
    assert "rollout_router_canary_failovers_total{" not in metrics


def test_input_only_the_canary_refuses_is_the_canarys_failure(app: App) -> None:
    reply = app.post("mixed", {"inputs": {"x": [2.0]}})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [{"x": 4.0}]}
    assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == ("failover", "1")
    request_id = reply.headers["x-request-id"]
    by_arm = {r.arm: r for r in app.records() if r.request_id == request_id}
    assert set(by_arm) == {"canary", "failover"}
    assert (by_arm["canary"].version, by_arm["canary"].status_code) == ("2", 422)
    assert (by_arm["canary"].error or "").startswith("signature_mismatch: the input is missing")
    assert (by_arm["failover"].status_code, by_arm["failover"].error) == (200, None)
    metrics = app.client.get("/metrics").text
    assert 'rollout_router_canary_failovers_total{model="mixed",version="2"} 1.0' in metrics


# -- micro-batching --
def test_batched_replies_equal_unbatched_ones(app: App, make_numeric: Any) -> None:
    rows = make_numeric(40, seed=3).to_dict(orient="records")
    pinned = {"x-model-version": "1", "authorization": f"Bearer {TOKEN}"}
    one_by_one = [app.post("num", {"dataframe_records": [row]}, **pinned).json() for row in rows]
    predictor = app.router.poller.active["num"].predictors["1"]
    assert predictor.fast is not None  # the numpy road, which batches
    with ThreadPoolExecutor(16) as pool:
        together = list(
            pool.map(
                lambda row: app.post("num", {"dataframe_records": [row]}, **pinned).json(), rows
            )
        )
    assert together == one_by_one
    alone = [predictor.predict(_payload({"dataframe_records": [row]})).outputs for row in rows]
    assert [r["predictions"] for r in together] == alone


def _payload(body: Any) -> Any:
    from router.payload import parse_body

    return parse_body(json.dumps(body).encode(), "application/json")


def test_a_streamed_body_over_the_limit_is_413(app: App) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": {"x": ['
        for _ in range(20_000):
            yield b"1.0," * 16
        yield b"1.0]}}"

    reply = app.client.post(
        "/v1/models/num/invocations",
        content=chunks(),
        headers={"content-type": "application/json", "x-request-id": "big-1"},
    )
    assert (reply.status_code, reply.json()["error_code"]) == (413, "payload_too_large")
    assert "exceeds 1048576 bytes" in reply.json()["message"]
    assert reply.headers["x-client-request-id"] == "big-1"  # echoed; the router issues its own
    assert len(reply.headers["x-request-id"]) == 64


def test_predicted_values_are_a_histogram_per_version(app: App) -> None:
    pinned = {"x-model-version": "2", "authorization": f"Bearer {TOKEN}"}
    reply = app.post("num", {"dataframe_records": [NUM_ROW, NUM_ROW]}, **pinned)
    (value, _) = reply.json()["predictions"]
    text = app.client.get("/metrics").text
    assert 'rollout_router_prediction_value_count{model="num",version="2"} 2.0' in text
    le = "0.0" if value == 0 else "1.0"  # a class label, 0 or 1
    assert (
        f'rollout_router_prediction_value_bucket{{le="{le}",model="num",version="2"}} 2.0' in text
    )
    assert (
        'rollout_router_requests_total{arm="pinned",model="num",release="",'
        'status="200",version="2"} 1.0' in text
    )


def test_invocation_routes_take_post_only(app: App) -> None:
    reply = app.client.get("/v1/models/num/invocations")
    assert (reply.status_code, reply.json()["error_code"]) == (405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
