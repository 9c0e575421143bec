"""Checking a payload against a version's signature, without pandas."""

from __future__ import annotations

import json

import pytest
from mlflow.types import ColSpec, Schema, TensorSpec

from router.errors import SignatureMismatch
from router.payload import Payload, parse_body
from router.schema import ColumnSpec, InputSchema

SCHEMA = InputSchema(
    (
        ColumnSpec("radius", "double"),
        ColumnSpec("count", "long"),
        ColumnSpec("site", "string"),
        ColumnSpec("note", "string", required=False),
    )
)
WHERE = "bc v2"


def _payload(records: list[dict[str, object]]) -> Payload:
    return parse_body(json.dumps({"dataframe_records": records}).encode(), "application/json")


def _check(records: list[dict[str, object]]) -> bool:
    return SCHEMA.check(_payload(records), WHERE)


def test_from_mlflow_reads_named_columns() -> None:
    schema = Schema([ColSpec("double", "radius"), ColSpec("string", "site", required=False)])
    assert InputSchema.from_mlflow(schema) == InputSchema(
        (ColumnSpec("radius", "double"), ColumnSpec("site", "string", required=False))
    )


def test_from_mlflow_leaves_tensors_and_unnamed_columns_to_mlflow() -> None:
    import numpy as np

    assert InputSchema.from_mlflow(None) is None
    assert InputSchema.from_mlflow(Schema([TensorSpec(np.dtype("float64"), (-1, 4))])) is None
    assert InputSchema.from_mlflow(Schema([ColSpec("double")])) is None


def test_exact_types_allow_the_fast_path() -> None:
    assert _check(
        [{"radius": 1.5, "count": 2, "site": "a"}, {"radius": 2, "count": 3, "site": "b"}]
    )


@pytest.mark.parametrize(
    "record",
    [
        {"radius": "12.5", "count": 2, "site": "a"},  # MLflow converts numeric text
        {"radius": True, "count": 2, "site": "a"},
        {"radius": 1.0, "count": 2.0, "site": "a"},
        {"radius": 1.0, "count": "7", "site": "a"},
        {"radius": 1.0, "count": 2, "site": 5},
        {"radius": 1.0, "count": 2, "site": "a", "note": None},  # optional and null
    ],
)
def test_convertible_values_go_through_mlflow(record: dict[str, object]) -> None:
    assert _check([record]) is False


def test_a_missing_column_is_named() -> None:
    with pytest.raises(SignatureMismatch) as raised:
        _check([{"count": 2, "site": "a"}])
    assert raised.value.status_code == 422
    assert raised.value.message.startswith(
        "the input is missing column 'radius', required by the signature of bc v2"
    )


def test_many_missing_columns_are_counted() -> None:
    schema = InputSchema(tuple(ColumnSpec(f"c{i}", "double") for i in range(8)))
    with pytest.raises(SignatureMismatch, match=r"columns 'c0', 'c1', 'c2', 'c3', 'c4' and 3 more"):
        schema.check(_payload([{"x": 1.0}]), WHERE)


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        (
            [{"radius": 1.0, "count": 2, "site": "a"}, {"count": 2, "site": "a"}],
            "row 1: column 'radius' is missing, but the signature of bc v2 requires a double",
        ),
        ([{"radius": None, "count": 2, "site": "a"}], "row 0: column 'radius' is null"),
        (
            [{"radius": "abc", "count": 2, "site": "a"}],
            "row 0: column 'radius' of bc v2 expects a double, got 'abc'",
        ),
        ([{"radius": [1.0], "count": 2, "site": "a"}], "expects a double, got a list"),
        ([{"radius": 1.0, "count": "2.5", "site": "a"}], "column 'count' of bc v2 expects a long"),
        ([{"radius": 1.0, "count": {"n": 1}, "site": "a"}], "expects a long, got an object"),
    ],
)
def test_wrong_cells_are_named(records: list[dict[str, object]], fragment: str) -> None:
    with pytest.raises(SignatureMismatch) as raised:
        _check(records)
    assert fragment in raised.value.message


def test_no_rows_is_422() -> None:
    payload = parse_body(b"radius,count,site\n", "text/csv")
    with pytest.raises(SignatureMismatch, match="the input has no rows; bc v2 needs at least one"):
        SCHEMA.check(payload, WHERE)


def test_positional_payloads_are_not_checked_here() -> None:
    payload = parse_body(b'{"inputs": [[1.0, 2, "a"]]}', "application/json")
    assert SCHEMA.check(payload, WHERE) is False


def test_example_row_fills_every_scalar_column() -> None:
    assert SCHEMA.example_row() == {"radius": 0.0, "count": 0, "site": "", "note": ""}


@pytest.mark.parametrize(
    ("schema", "record", "fragment"),
    [
        # A number no value of the column can hold: the model would get infinity and fail.
        (InputSchema((ColumnSpec("x", "float"),)), {"x": 1e39}, "beyond the largest float"),
        (InputSchema((ColumnSpec("x", "float"),)), {"x": -1e39}, "beyond the largest float"),
        (InputSchema((ColumnSpec("x", "double"),)), {"x": 10**400}, "beyond the largest double"),
        # Text spelling a non-finite number, which MLflow's road would convert to one.
        (InputSchema((ColumnSpec("x", "double"),)), {"x": "NaN"}, "expects a finite double"),
        (InputSchema((ColumnSpec("x", "float"),)), {"x": "-inf"}, "expects a finite float"),
    ],
)
def test_numbers_beyond_a_float_column_are_a_422_naming_it(
    schema: InputSchema, record: dict[str, object], fragment: str
) -> None:
    with pytest.raises(SignatureMismatch) as raised:
        schema.check(_payload([record]), WHERE)
    assert raised.value.message.startswith("row 0: column 'x' of bc v2 expects a")
    assert fragment in raised.value.message


def test_the_largest_finite_values_still_fit() -> None:
    assert InputSchema((ColumnSpec("x", "float"),)).check(_payload([{"x": 3.4e38}]), WHERE)
    assert InputSchema((ColumnSpec("x", "double"),)).check(_payload([{"x": 1.7e308}]), WHERE)
    assert InputSchema((ColumnSpec("x", "double"),)).check(_payload([{"x": 2**70}]), WHERE)
