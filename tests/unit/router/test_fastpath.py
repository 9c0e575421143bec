"""The numpy road is taken only where it answers exactly what ``PyFuncModel.predict`` answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.pyfunc import scoring_server

from router.payload import parse_body
from router.predictor import Predictor

JSON = "application/json"


@pytest.fixture(scope="module")
def numeric(numeric_dir: Path) -> Any:
    return mlflow.pyfunc.load_model(str(numeric_dir))


def test_a_numeric_sklearn_version_takes_the_numpy_road(numeric: Any) -> None:
    predictor = Predictor("num", "1", numeric)
    assert predictor.warm() == "synthetic row (numpy road)"
    assert predictor.fast is not None and predictor.predict_s is not None
    assert predictor.fast.names == ("a", "b", "n")


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [{"a": 0.3, "b": 5.5, "n": 4}, {"a": -1.0, "b": 2.0, "n": 0}]},
        {"dataframe_split": {"columns": ["n", "b", "a"], "data": [[4, 5.5, 0.3]]}},
        {"inputs": {"a": [0.3, 2.5], "b": [5.5, 9.0], "n": [4, 1]}},
        {"instances": [{"b": 1.5, "a": 0.25, "n": 9}]},
    ],
)
def test_numpy_road_replies_equal_mlflow(numeric: Any, body: Any) -> None:
    predictor = Predictor("num", "1", numeric)
    predictor.warm()
    payload = parse_body(json.dumps(body).encode(), JSON)
    assert predictor.matrix(payload) is not None
    expected = scoring_server.invocations(
        json.dumps(body), JSON, numeric, numeric.metadata.get_input_schema()
    )
    assert predictor.predict(payload).body.decode() == expected.response


def test_pipelines_selecting_columns_by_name_keep_the_mlflow_road(
    pipelines: dict[str, Path],
) -> None:
    predictor = Predictor("bc", "1", mlflow.pyfunc.load_model(str(pipelines["labels"])))
    predictor.warm()
    assert predictor.fast is None  # a string column: not numeric


def test_values_needing_conversion_keep_the_mlflow_road(numeric: Any) -> None:
    predictor = Predictor("num", "1", numeric)
    predictor.warm()
    text = '{"dataframe_records": [{"a": "0.5", "b": 1.0, "n": 2}]}'
    payload = parse_body(text.encode(), JSON)
    assert predictor.matrix(payload) is None
    schema = numeric.metadata.get_input_schema()
    expected = scoring_server.invocations(text, JSON, numeric, schema)
    assert predictor.predict(payload).body.decode() == expected.response
