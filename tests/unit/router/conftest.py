"""Real MLflow models saved to directories, for the router's unit tests (no registry needed).

- ``pipelines`` (session): an sklearn pipeline over ``radius`` (double), ``count`` (long) and
  ``site`` (string), saved twice: ``labels`` (pyfunc = ``predict``) and ``proba``
  (``predict_proba``); maps the name to the model directory;
- ``failing_dir`` (session): a pyfunc that doubles ``x`` and raises on negative values;
- ``numeric_dir`` (session): a LogisticRegression fitted on a DataFrame of three numeric
  columns (``a`` double, ``b`` double, ``n`` long): the router's numpy road;
- ``tricky_dir`` (session): a pyfunc that doubles ``x``, except ``x == 13`` (or below 0)
  raises, ``x == 7`` returns one prediction too many, and ``x >= 1000`` sleeps ``x / 1000``
  seconds first;
- ``make_rows``: the function that makes input frames like the training data;
- ``serve``: a context manager serving an app with uvicorn on loopback, yielding a client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "radius": rng.normal(10.0, 3.0, n),
            "count": rng.integers(0, 10, n).astype("int64"),
            "site": rng.choice(["a", "b", "c"], n),
        }
    )


def save_pipeline(path: Path, predict_fn: str = "predict") -> Path:
    X = frame(200)
    y = ((X["radius"] + X["count"] / 3 + (X["site"] == "b")) > 12).astype(int)
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["radius", "count"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["site"]),
            ]
        ),
        LogisticRegression(),
    ).fit(X, y)
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        signature=infer_signature(X, pipeline.predict(X)),
        pyfunc_predict_fn=predict_fn,
        pip_requirements=["scikit-learn"],
    )
    return path


class Failing(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        if (model_input["x"] < 0).any():
            raise RuntimeError("negative x is not supported")
        return model_input["x"] * 2


def save_failing(path: Path) -> Path:
    example = pd.DataFrame({"x": [1.0]})
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Failing(),
        signature=infer_signature(example, example["x"]),
        input_example=example,
        pip_requirements=["mlflow"],
    )
    return path


class Tricky(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        x = float(model_input["x"].iloc[0])
        if x == 13 or x < 0:
            raise RuntimeError(f"{x:g} is unlucky")
        if x >= 1000:
            time.sleep(x / 1000)
        doubled = (model_input["x"] * 2).tolist()
        return [*doubled, 0.0] if x == 7 else doubled


def numeric_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(0.0, 1.0, n),
            "b": rng.normal(5.0, 2.0, n),
            "n": rng.integers(0, 10, n).astype("int64"),
        }
    )


@pytest.fixture(scope="session")
def numeric_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X = numeric_frame(300)
    y = (X["a"] + X["b"] / 3 + X["n"] / 5 > 3.5).astype(int)
    model = LogisticRegression().fit(X, y)
    path = tmp_path_factory.mktemp("router-numeric") / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        pip_requirements=["scikit-learn"],
    )
    return path


@pytest.fixture(scope="session")
def tricky_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("router-tricky") / "model"
    example = pd.DataFrame({"x": [1.0]})
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Tricky(),
        signature=infer_signature(example, example["x"]),
        input_example=example,
        pip_requirements=["mlflow"],
    )
    return path


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("router-pipelines")
    return {
        name: save_pipeline(root / name, fn)
        for name, fn in (("labels", "predict"), ("proba", "predict_proba"))
    }


@pytest.fixture(scope="session")
def failing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_failing(tmp_path_factory.mktemp("router-failing") / "model")


@pytest.fixture
def make_rows() -> Any:
    return frame


@contextmanager
def serving(app: Any) -> Iterator[httpx.Client]:
    """Serve ``app`` with uvicorn on a free loopback port (lifespan on) for the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="session")
def serve() -> Any:
    return serving


@pytest.fixture
def make_numeric() -> Any:
    return numeric_frame
