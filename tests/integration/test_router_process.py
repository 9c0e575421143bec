"""``python -m router`` as its own process: configured from ROLLOUT_* only, two models, a model
that raises, a failing canary answered by its baseline, and a clean shutdown on SIGTERM that
flushes the prediction log.

The registry is the ``home`` fixture's copy of the demo registry, with one more model, ``boom``
(a pyfunc logged from code that doubles ``x`` and raises on negative values).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sqlalchemy import select

from conftest import MODEL, DemoHome
from contract.plans import TrafficPlan
from contract.sql import schema
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from rollout.registry import MlflowRegistry
from rollout.router_keys import router_secrets
from rollout.store.predictions import PredictionLog

ENV = "prod"
BOOM_CODE = dedent(
    """
    import mlflow
    import pandas as pd


    class Boom(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
            if (model_input["x"] < 0).any():
                raise RuntimeError("negative x is not supported")
            return model_input["x"] * 2


    mlflow.models.set_model(Boom())
    """
)


def _register_boom(home: DemoHome, tmp_path: Path, code_text: str = BOOM_CODE) -> str:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    name = "router-boom" if code_text == BOOM_CODE else "router-boom-safe"
    experiment = registry.client.create_experiment(
        name, artifact_location=(tmp_path / f"{name}-artifacts").as_uri()
    )
    code = tmp_path / f"{name.replace('-', '_')}.py"
    code.write_text(code_text)
    example = pd.DataFrame({"x": [1.0]})
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=infer_signature(example, example["x"]),
            input_example=example,
            registered_model_name="boom",
            pip_requirements=["mlflow"],
        )
    return str(info.registered_model_version)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def router_process(
    home: DemoHome, tmp_path: Path
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes], Path]]:
    boom_version = _register_boom(home, tmp_path)
    plans = SqlPlanStore(open_engine(home.settings.store_url))
    plans.put(TrafficPlan(ENV, MODEL, "1", "2", 30, rollout_id="r-proc"))
    plans.put(TrafficPlan(ENV, "boom", boom_version))
    port = _free_port()
    env = {
        **os.environ,
        **home.settings.env(),
        "ROLLOUT_LOG_FLUSH_S": "0.1",
        "ROLLOUT_PLAN_POLL_S": "0.2",
    }
    log_path = tmp_path / "router.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rollout",
                "router",  # as a user starts it: the home's store, registry and secrets
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--environment",
                ENV,
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield client, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_router_process_serves_records_and_shuts_down_cleanly(
    home: DemoHome, router_process: tuple[httpx.Client, subprocess.Popen[bytes], Path]
) -> None:
    client, process, log_path = router_process
    rows = home.data.serve_X.head(3)

    # Two models have plans, so /invocations cannot guess which one is meant.
    default = client.post("/invocations", json={"dataframe_records": rows.to_dict("records")})
    assert (default.status_code, default.json()["error_code"]) == (404, "no_default_model")

    bc = client.post(
        "/v1/models/bc/invocations",
        json={"dataframe_split": rows.to_dict(orient="split")},
    )
    assert bc.status_code == 200
    version = bc.headers["x-model-version"]
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(rows).tolist()
    assert bc.json() == {"predictions": expected}

    ok = client.post(
        "/v1/models/boom/invocations",
        json={"inputs": {"x": [2.0, 3.5]}},
    )
    assert ok.json() == {"predictions": [{"x": 4.0}, {"x": 7.0}]}
    failed = client.post(
        "/v1/models/boom/invocations",
        json={"inputs": {"x": [-1.0]}},
    )
    assert failed.status_code == 500
    assert failed.json()["error_code"] == "model_error"
    incident = failed.json()["message"].removeprefix("boom v1 failed: RuntimeError (incident ")
    assert len(incident) == 13 and incident.endswith(")")  # the words are in the log, not here
    assert f"incident {incident[:12]}: model_error: boom v1 failed: RuntimeError: negative x" in (
        log_path.read_text()
    )
    assert failed.headers["x-model-name"] == "boom"

    # SIGTERM: uvicorn shuts down gracefully (then re-raises the signal, so the exit status is
    # -SIGTERM), and the lifespan flushes the prediction log before the process ends.
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    by_id = {
        r.request_id: r
        for model in (MODEL, "boom")
        for r in PredictionLog(open_engine(home.settings.store_url)).recent(ENV, model)
    }
    records = {
        name: by_id[reply.headers["x-request-id"]]
        for name, reply in (("proc-bc", bc), ("proc-ok", ok), ("proc-failed", failed))
    }
    assert records["proc-bc"].version == version and records["proc-bc"].status_code == 200
    assert records["proc-ok"].output == '[{"x": 4.0}, {"x": 7.0}]'
    assert records["proc-failed"].status_code == 500
    assert records["proc-failed"].error == (
        "model_error: boom v1 failed: RuntimeError: negative x is not supported"
    )
    assert records["proc-failed"].output is None


def test_the_homes_label_writer_labels_what_rollout_router_served(
    home: DemoHome, router_process: tuple[httpx.Client, subprocess.Popen[bytes], Path]
) -> None:
    """``rollout router`` on the embedded default signs ids with the home's key and takes
    labels from the home's label writer (``<home>/secrets/label-writer.token``) only."""
    client, _process, _log = router_process
    rows = home.data.serve_X.head(1)
    served = client.post(
        "/v1/models/bc/invocations", json={"dataframe_split": rows.to_dict("split")}
    )
    request_id = served.headers["x-request-id"]
    label = {"request_id": request_id, "label": 1}
    anonymous = client.post("/v1/feedback", json=label)
    assert (anonymous.status_code, anonymous.json()["error_code"]) == (401, "unauthorized")
    token = router_secrets(home.settings.home).label_token
    writer = {"authorization": f"Bearer {token}"}
    last = "1" if request_id.endswith("0") else "0"  # one hex digit of the tag changed
    forged = client.post(
        "/v1/feedback", json={**label, "request_id": request_id[:-1] + last}, headers=writer
    )
    assert (forged.status_code, forged.json()["error_code"]) == (404, "unknown_request_id")
    accepted = client.post("/v1/feedback", json=label, headers=writer)
    assert (accepted.status_code, accepted.json()) == (202, {"accepted": 1})


def test_a_failing_canary_process_is_answered_by_the_baseline(
    home: DemoHome,
    tmp_path: Path,
    router_process: tuple[httpx.Client, subprocess.Popen[bytes], Path],
) -> None:
    client, process, log_path = router_process
    safe = _register_boom(home, tmp_path, BOOM_CODE.replace("< 0).any()", "< -1e300).any()"))
    plans = SqlPlanStore(open_engine(home.settings.store_url))
    stored = plans.put(TrafficPlan(ENV, "boom", safe, "1", 100, rollout_id="r-failover"))
    deadline = time.monotonic() + 60
    while True:  # the new version is loaded and warmed before the plan serves
        boom = [m for m in client.get("/v1/models").json()["models"] if m["model"] == "boom"]
        if boom and boom[0]["generation"] == stored.generation:
            break
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    reply = client.post(
        "/v1/models/boom/invocations",
        json={"inputs": {"x": [-1.5]}},
    )
    assert reply.status_code == 200
    assert reply.json() == {"predictions": [{"x": -3.0}]}
    assert (reply.headers["x-arm"], reply.headers["x-model-version"]) == ("failover", safe)
    metrics = client.get("/metrics").text
    assert 'rollout_router_canary_failovers_total{model="boom",version="1"} 1.0' in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    records = [
        r
        for r in PredictionLog(open_engine(home.settings.store_url)).recent(ENV, "boom")
        if r.request_id == reply.headers["x-request-id"]
    ]
    by_arm = {r.arm: r for r in records}
    assert set(by_arm) == {"canary", "failover"}
    assert by_arm["canary"].version == "1" and by_arm["canary"].status_code == 500
    assert by_arm["canary"].error == (
        "model_error: boom v1 failed: RuntimeError: negative x is not supported"
    )
    assert by_arm["failover"].version == safe and by_arm["failover"].status_code == 200


def _replay(home: DemoHome, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", "--home", str(home.settings.home), "replay", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **home.settings.env()},
    )


def test_rollout_replay_sends_rows_then_their_labels_and_counts_what_failed(
    home: DemoHome,
    tmp_path: Path,
    router_process: tuple[httpx.Client, subprocess.Popen[bytes], Path],
) -> None:
    """``rollout replay`` on a real router: each row a request (both arms, no sticky key), the
    label column left out of the inputs and stored as each reply's label by the home's label
    writer; a model that fails on some rows makes it exit 1 with the count and the first
    failure; a wrong label column is refused (exit 2) with the columns the file has."""
    client, process, log_path = router_process
    url = str(client.base_url)
    rows = home.data.serve_X.head(40).assign(truth=home.data.serve_y.head(40).to_numpy())
    rows["truth"] = rows["truth"].astype("Int64")
    rows.loc[rows.index[0], "truth"] = pd.NA  # row 0's label never came: sent twice, no label
    rows.to_csv(tmp_path / "bc.csv", index=False)
    done = _replay(
        home,
        "bc",
        str(tmp_path / "bc.csv"),
        "--label",
        "truth",
        "--router",
        url,
        "--requests",
        "60",
        "--label-delay",
        "0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert (counts["sent"], counts["failed"], counts["labels_sent"]) == (60, 0, 58), counts
    assert counts["ok"] and counts["labels_refused"] == 0
    by_version = counts["answered_by_version"]
    assert set(by_version) == {"1 (baseline)", "2 (canary)"} and sum(by_version.values()) == 60

    boom = pd.DataFrame({"x": [1.0, -1.0, 2.0, -3.0]})
    boom.to_csv(tmp_path / "boom.csv", index=False)
    failing = _replay(home, "boom", str(tmp_path / "boom.csv"), "--router", url, "--json")
    assert failing.returncode == 1, failing.stderr
    counts = json.loads(failing.stdout)
    assert (counts["sent"], counts["failed"], counts["ok"]) == (4, 2, False), counts
    assert "HTTP 500" in counts["first_error"] and "model_error" in counts["first_error"]

    wrong = _replay(home, "bc", str(tmp_path / "bc.csv"), "--label", "target", "--router", url)
    assert wrong.returncode == 2
    assert "--label: no column 'target' in bc.csv; it has mean radius," in wrong.stderr
    nobody = f"http://127.0.0.1:{_free_port()}"
    gone = _replay(home, "bc", str(tmp_path / "bc.csv"), "--router", nobody, "--wait", "1")
    assert gone.returncode == 2 and "did not answer 200 in 1 s" in gone.stderr
    bad = _replay(home, "bc", str(tmp_path / "bc.csv"), "--router", url + "9")
    assert bad.returncode == 2 and "--router: expected an http(s) URL" in bad.stderr

    # the labels are the file's, stored for the router's own request ids
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    engine = open_engine(home.settings.store_url)
    with engine.connect() as connection:
        labelled = connection.execute(
            select(schema.predictions.c.features, schema.feedback.c.label)
            .join(
                schema.feedback,
                schema.feedback.c.request_id == schema.predictions.c.request_id,
            )
            .where(schema.predictions.c.model == "bc")
        ).all()
    assert len(labelled) == 58
    features = list(home.data.serve_X.columns)

    def key(row: Any) -> tuple[float, ...]:
        return tuple(round(float(row[c]), 6) for c in features)

    truth = {key(r): r["truth"] for _, r in rows.iterrows()}
    assert len(truth) == len(rows)
    for sampled, label in labelled:
        if sampled is not None:  # sampled rows: the label is that row's
            row = json.loads(sampled)[0]
            assert "truth" not in row
            assert json.loads(label) == truth[key(row)]
