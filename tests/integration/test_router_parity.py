"""Protocol parity: the router answers what a real ``mlflow models serve`` answers.

Three versions are registered in a temporary SQLite MLflow registry: ``clf`` (a scikit-learn
LogisticRegression on the breast-cancer columns; the router's numpy road), ``reg`` (a Ridge
regressor on the diabetes columns; numpy road, float outputs) and ``par`` (a pyfunc whose output
depends on ``params``; MLflow's road). Each is served by ``mlflow models serve --env-manager
local`` in its own process, and all three by one router process; every payload format is sent to
both and the reply bodies must be identical.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge

from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore

ENV = "prod"


class Scaled(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        factor = (params or {}).get("factor", 1.0)
        label = (params or {}).get("label", "y")
        return pd.DataFrame({label: model_input["x"] * factor + model_input["k"]})


@dataclass(frozen=True)
class Servers:
    router: httpx.Client
    mlflow: dict[str, httpx.Client]  # model → its mlflow models serve
    frames: dict[str, pd.DataFrame]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(root: Path) -> tuple[str, dict[str, pd.DataFrame]]:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("parity", artifact_location=(root / "art").as_uri())
    cancer = load_breast_cancer(as_frame=True)
    diabetes = load_diabetes(as_frame=True)
    clf_X = cancer.data.iloc[:, :8]
    reg_X = diabetes.data
    par_X = pd.DataFrame({"x": [0.5, 1.5, -2.0], "k": [1, 2, 3]})
    clf = LogisticRegression(max_iter=5000).fit(clf_X, cancer.target)
    reg = Ridge().fit(reg_X, diabetes.target)
    try:
        with mlflow.start_run(experiment_id=experiment):
            for name, model, X in (("clf", clf, clf_X), ("reg", reg, reg_X)):
                mlflow.sklearn.log_model(
                    model,
                    name=name,
                    signature=infer_signature(X, model.predict(X)),
                    registered_model_name=name,
                    pip_requirements=["scikit-learn"],
                )
            params = {"factor": 1.0, "label": "y"}
            mlflow.pyfunc.log_model(
                name="par",
                python_model=Scaled(),
                signature=infer_signature(par_X, par_X[["x"]], params=params),
                registered_model_name="par",
                pip_requirements=["mlflow"],
            )
    finally:
        mlflow.set_tracking_uri(None)
    frames = {"clf": clf_X.iloc[10:14], "reg": reg_X.iloc[:3], "par": par_X}
    return uri, frames


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _wait(client: httpx.Client, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited:\n{log.read_text()[-3000:]}"
        try:
            if client.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{process.args} did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("parity")
    uri, frames = _register(root)
    store_url = f"sqlite:///{root / 'rollout.db'}"
    plans = SqlPlanStore(open_engine(store_url))
    for name in frames:
        plans.put(TrafficPlan(ENV, name, "1"))
    processes: list[subprocess.Popen[bytes]] = []
    clients: dict[str, httpx.Client] = {}
    ports: dict[str, int] = {}
    base = {"MLFLOW_TRACKING_URI": uri}
    try:
        for name in [*frames, "router"]:
            port = ports[name] = _free_port()
            if name == "router":
                cmd = [
                    sys.executable,
                    "-m",
                    "router",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ]
                extra = {**base, "ROLLOUT_REGISTRY_URI": uri, "ROLLOUT_STORE_URL": store_url}
                extra["ROLLOUT_HOME"] = str(root / "home")
            else:
                cmd = ["mlflow", "models", "serve", "-m", f"models:/{name}/1"]
                cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
                extra = base
            log = root / f"{name}.log"
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        cmd,
                        env=_env(extra),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            clients[name] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for (name, client), process in zip(clients.items(), processes, strict=True):
            path = "/readyz" if name == "router" else "/ping"
            _wait(client, path, process, root / f"{name}.log")
        yield Servers(clients.pop("router"), clients, frames)
    finally:
        for client in clients.values():
            client.close()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _bodies(frame: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    records = frame.to_dict(orient="records")
    split = frame.to_dict(orient="split")
    del split["index"]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(frame.columns)
    writer.writerows(frame.itertuples(index=False))
    as_json = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_split-index": {"dataframe_split": frame.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs-records": {"inputs": records},
        "inputs-columns": {"inputs": frame.to_dict(orient="list")},
        "inputs-one-record": {"inputs": records[0]},
    }
    out = {k: (json.dumps(v).encode(), "application/json") for k, v in as_json.items()}
    out["csv"] = (text.getvalue().encode(), "text/csv")
    return out


CASES = [
    (model, case)
    for model in ("clf", "reg", "par")
    for case in (
        "dataframe_split",
        "dataframe_split-index",
        "dataframe_records",
        "instances",
        "inputs-records",
        "inputs-columns",
        "inputs-one-record",
        "csv",
    )
]


@pytest.mark.parametrize(("model", "case"), CASES)
def test_every_format_matches_mlflow_models_serve(servers: Servers, model: str, case: str) -> None:
    body, content_type = _bodies(servers.frames[model])[case]
    headers = {"content-type": content_type}
    expected = servers.mlflow[model].post("/invocations", content=body, headers=headers)
    got = servers.router.post(f"/v1/models/{model}/invocations", content=body, headers=headers)
    assert expected.status_code == 200, expected.text
    assert got.status_code == 200, got.text
    assert got.json() == expected.json()
    assert got.content == expected.content


@pytest.mark.parametrize(
    "params",
    [{"factor": 2.5}, {"factor": -1.0, "label": "z"}, {}],
)
@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "inputs"])
def test_params_reach_the_model_as_with_mlflow(
    servers: Servers, fmt: str, params: dict[str, Any]
) -> None:
    frame = servers.frames["par"]
    data: Any = {
        "dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()},
        "dataframe_records": frame.to_dict(orient="records"),
        "inputs": frame.to_dict(orient="list"),
    }[fmt]
    body = json.dumps({fmt: data, "params": params}).encode()
    headers = {"content-type": "application/json"}
    expected = servers.mlflow["par"].post("/invocations", content=body, headers=headers)
    got = servers.router.post("/v1/models/par/invocations", content=body, headers=headers)
    assert expected.status_code == got.status_code == 200, (expected.text, got.text)
    assert got.content == expected.content
