"""A loaded version answers byte for byte what ``mlflow models serve`` answers.

The oracle is MLflow's own scoring server function (``scoring_server.invocations``) on the same
saved model and the same body; the models are real MLflow models saved to a temporary
directory (an sklearn pipeline over mixed column types, and a pyfunc that raises).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server

from router.errors import ModelError, SignatureMismatch
from router.payload import parse_body
from router.predictor import Predictor

JSON = "application/json"


@pytest.fixture(scope="module")
def models(pipelines: dict[str, Path]) -> dict[str, Any]:
    return {name: mlflow.pyfunc.load_model(str(path)) for name, path in pipelines.items()}


@pytest.fixture(scope="module")
def failing(failing_dir: Path) -> Any:
    return mlflow.pyfunc.load_model(str(failing_dir))


def _rows(n: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "radius": rng.normal(10.0, 3.0, n),
            "count": rng.integers(0, 10, n).astype("int64"),
            "site": rng.choice(["a", "b", "c"], n),
        }
    )


def _bodies() -> dict[str, tuple[str, str]]:
    X = _rows()
    records = X.to_dict(orient="records")
    shuffled = X[["site", "radius", "count"]]
    with_text = [dict(r, radius=str(r["radius"]), count=str(r["count"])) for r in records]
    return {
        "split": (json.dumps({"dataframe_split": X.to_dict(orient="split")}), JSON),
        "split-shuffled": (
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": list(shuffled.columns),
                        "data": shuffled.values.tolist(),
                    }
                }
            ),
            JSON,
        ),
        "records": (json.dumps({"dataframe_records": records}), JSON),
        "records-numeric-text": (json.dumps({"dataframe_records": with_text}), JSON),
        "instances": (json.dumps({"instances": records}), JSON),
        "inputs-records": (json.dumps({"inputs": records}), JSON),
        "inputs-columns": (json.dumps({"inputs": X.to_dict(orient="list")}), JSON),
        "inputs-one-record": (json.dumps({"inputs": records[0]}), JSON),
        "params": (json.dumps({"dataframe_records": records, "params": {"unused": 1}}), JSON),
        "csv": (X.to_csv(index=False), "text/csv"),
    }


@pytest.mark.parametrize("model_name", ["labels", "proba"])
@pytest.mark.parametrize("case", sorted(_bodies()))
def test_reply_is_what_mlflow_serves(models: dict[str, Any], model_name: str, case: str) -> None:
    model = models[model_name]
    body, content_type = _bodies()[case]
    expected = scoring_server.invocations(
        body, content_type, model, model.metadata.get_input_schema()
    )
    assert expected.status == 200
    prediction = Predictor("m", "1", model).predict(parse_body(body.encode(), content_type))
    assert prediction.body.decode() == expected.response
    assert prediction.outputs == json.loads(expected.response)["predictions"]


def test_exact_tables_skip_mlflow_parsing(models: dict[str, Any]) -> None:
    predictor = Predictor("m", "1", models["labels"])
    body, content_type = _bodies()["records"]
    frame = predictor.model_input(parse_body(body.encode(), content_type))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["radius", "count", "site"]
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "object"]


def test_missing_column_is_422_naming_it(models: dict[str, Any]) -> None:
    predictor = Predictor("bc", "2", models["labels"])
    records = _rows().drop(columns=["count"]).to_dict(orient="records")
    payload = parse_body(json.dumps({"dataframe_records": records}).encode(), JSON)
    with pytest.raises(SignatureMismatch, match=r"missing column 'count'.* of bc v2"):
        predictor.predict(payload)


def test_extra_column_is_422_naming_it(models: dict[str, Any]) -> None:
    # mlflow models serve drops it silently; the router refuses it (a misspelt feature).
    predictor = Predictor("bc", "2", models["labels"])
    records = [dict(r, extra=1) for r in _rows().to_dict(orient="records")]
    payload = parse_body(json.dumps({"dataframe_records": records}).encode(), JSON)
    with pytest.raises(SignatureMismatch, match=r"has column 'extra' that the signature of bc v2"):
        predictor.predict(payload)


def test_positional_rows_for_named_columns_are_422(models: dict[str, Any]) -> None:
    predictor = Predictor("bc", "2", models["labels"])
    payload = parse_body(b'{"inputs": [[1.0, 2, "a"]]}', JSON)
    with pytest.raises(SignatureMismatch, match="rows have no column names, but bc v2 takes 3"):
        predictor.predict(payload)


def test_values_mlflow_cannot_convert_are_422(models: dict[str, Any]) -> None:
    predictor = Predictor("bc", "2", models["labels"])
    payload = parse_body(
        b'{"dataframe_records": [{"radius": 1.0, "count": 2147483648000000000000, "site": "a"}]}',
        JSON,
    )
    with pytest.raises(SignatureMismatch, match="does not match the signature of bc v2"):
        predictor.predict(payload)


def test_model_exception_is_a_500_naming_the_version(failing: Any) -> None:
    predictor = Predictor("boom", "4", failing)
    ok = predictor.predict(parse_body(b'{"inputs": {"x": [1.5]}}', JSON))
    assert json.loads(ok.body) == {"predictions": [{"x": 3.0}]}
    with pytest.raises(ModelError) as raised:
        predictor.predict(parse_body(b'{"inputs": {"x": [-1.0]}}', JSON))
    assert raised.value.status_code == 500
    assert raised.value.message == "boom v4 failed: RuntimeError: negative x is not supported"


def test_warm_uses_the_input_example_else_a_synthetic_row(
    models: dict[str, Any], failing: Any
) -> None:
    assert Predictor("boom", "4", failing).warm() == "input example"
    assert Predictor("m", "1", models["labels"]).warm() == "synthetic row"
