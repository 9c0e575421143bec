"""Parsing scoring bodies: the four JSON formats and CSV, and the errors that name the problem."""

from __future__ import annotations

import json

import pytest

from router.errors import MalformedRequest, UnsupportedContentType
from router.payload import MISSING, media_type, parse_body

JSON = "application/json"
ROWS = [{"a": 1.5, "b": 2, "c": "x"}, {"a": 3.0, "b": 4, "c": "y"}]
COLUMNS = ("a", "b", "c")
TUPLES = ((1.5, 2, "x"), (3.0, 4, "y"))


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": list(COLUMNS), "data": [list(t) for t in TUPLES]}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"inputs": ROWS},
        {"inputs": {"a": [1.5, 3.0], "b": [2, 4], "c": ["x", "y"]}},
    ],
    ids=["split", "records", "instances", "inputs-records", "inputs-columns"],
)
def test_every_json_format_becomes_the_same_table(document: dict[str, object]) -> None:
    payload = parse_body(_json(document), JSON)
    assert payload.format == next(iter(document))
    assert payload.columns == COLUMNS
    assert payload.rows == TUPLES
    assert payload.records() == ROWS
    assert payload.field("c") == "x"
    assert payload.field("a") == "1.5"
    assert payload.field("missing") is None
    assert payload.params is None


def test_csv_becomes_the_same_table() -> None:
    payload = parse_body(b"a,b,c\n1.5,2,x\n3.0,4,y\n", "text/csv; charset=utf-8")
    assert payload.format == "csv"
    assert payload.columns == COLUMNS
    assert payload.rows == TUPLES
    assert payload.data == "a,b,c\n1.5,2,x\n3.0,4,y\n"


def test_csv_empty_fields_are_null_and_quoted_fields_are_text() -> None:
    payload = parse_body(b'a,b,c\n,2,"x, y"\n', "text/csv")
    assert payload.rows == ((None, 2, "x, y"),)


def test_params_are_kept() -> None:
    payload = parse_body(_json({"inputs": ROWS, "params": {"top_k": 3}}), JSON)
    assert payload.params == {"top_k": 3}


def test_single_record_in_inputs_is_one_row() -> None:
    payload = parse_body(_json({"inputs": {"a": 1.5, "b": 2}}), JSON)
    assert payload.columns == ("a", "b")
    assert payload.rows == ((1.5, 2),)


def test_records_with_different_keys_mark_missing_cells() -> None:
    payload = parse_body(_json({"dataframe_records": [{"a": 1}, {"b": 2}]}), JSON)
    assert payload.columns == ("a", "b")
    assert payload.rows == ((1, MISSING), (MISSING, 2))
    assert payload.records() == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize(
    ("document", "logged"),
    [
        ({"dataframe_split": {"data": [[1, 2]]}}, [[1, 2]]),
        ({"instances": [[1, 2], [3, 4]]}, [[1, 2], [3, 4]]),
        ({"inputs": [[1, 2], [3, 4]]}, [[1, 2], [3, 4]]),
        ({"inputs": [1, 2, 3]}, [1, 2, 3]),
    ],
)
def test_positional_inputs_are_not_tabular(document: dict[str, object], logged: object) -> None:
    payload = parse_body(_json(document), JSON)
    assert not payload.tabular
    assert payload.field("a") is None
    assert payload.records() == logged


def test_split_index_is_noted() -> None:
    document = {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [7]}}
    assert parse_body(_json(document), JSON).has_index


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b"{bad", "malformed_json", "line 1 column 2"),
        (b"\xff\xfe{", "malformed_json", "not UTF-8 text: invalid start byte at byte 0"),
        (b"[1, 2]", "invalid_format", "got a list"),
        (b'{"rows": []}', "invalid_format", "its keys are 'rows'"),
        (b"{}", "invalid_format", "its keys are none"),
        (
            b'{"inputs": [], "instances": []}',
            "invalid_format",
            "its keys are 'inputs', 'instances'",
        ),
        (b'{"inputs": [], "params": [1]}', "invalid_format", "'params' must be an object"),
        (b'{"dataframe_records": {"a": 1}}', "invalid_format", "must be a list of records"),
        (b'{"dataframe_split": [[1]]}', "invalid_format", "must be an object with 'data'"),
        (b'{"dataframe_split": {"columns": ["a"]}}', "invalid_format", "must have 'data'"),
        (
            b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}',
            "invalid_format",
            "row 1 has 1 values but 'columns' names 2",
        ),
    ],
)
def test_malformed_json_bodies_are_400(body: bytes, code: str, fragment: str) -> None:
    with pytest.raises(MalformedRequest) as raised:
        parse_body(body, JSON)
    assert raised.value.status_code == 400
    assert raised.value.error_code == code
    assert fragment in raised.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"a,b\n1,2,3\n", "line 2 has 3 fields but the header names 2"),
        (b"a\n\xff\n", "not UTF-8"),
    ],
)
def test_malformed_csv_is_400(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedRequest, match=fragment) as raised:
        parse_body(body, "text/csv")
    assert raised.value.error_code == "malformed_csv"


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        (None, "has no Content-Type"),
        ("text/plain", "'text/plain' is not supported"),
        ("application/x-www-form-urlencoded", "is not supported"),
        ("application/json; charset=latin-1", "charset 'latin-1'"),
    ],
)
def test_other_content_types_are_415(content_type: str | None, fragment: str) -> None:
    with pytest.raises(UnsupportedContentType, match=fragment) as raised:
        parse_body(b"{}", content_type)
    assert raised.value.status_code == 415


def test_media_type_is_case_insensitive_and_allows_utf8() -> None:
    assert media_type("Application/JSON; charset=UTF-8") == JSON
    assert media_type("text/csv;charset=utf8") == "text/csv"


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"inputs": {"x": [2147483648000000000000]}}', 2147483648000000000000),
        (b'{"inputs": {"x": [0.1]}}', 0.1),
    ],
)
def test_json_values_are_what_the_standard_parser_reads(body: bytes, value: object) -> None:
    (got,) = parse_body(body, "application/json").data["x"]
    assert type(got) is type(json.loads(body)["inputs"]["x"][0])
    assert repr(got) == repr(value)


@pytest.mark.parametrize(
    ("split", "fragment"),
    [
        (
            {"columns": ["a"], "index": [0, 1, 2], "data": [[1.0]]},
            "'dataframe_split.index' has 3 labels but 'dataframe_split.data' has 1 rows",
        ),
        (
            {"columns": ["a"], "index": [], "data": [[1.0], [2.0]]},
            "'dataframe_split.index' has 0 labels but 'dataframe_split.data' has 2 rows",
        ),
        ({"columns": ["a"], "index": 5, "data": [[1.0]]}, "must be a list of row labels"),
        ({"columns": ["a"], "index": [[0]], "data": [[1.0]]}, "labels must be strings or numbers"),
        ({"columns": ["a", "a"], "data": [[1.0, 2.0]]}, "names 'a' more than once"),
        ({"data": [[1.0, 2.0], [3.0]]}, "rows have different lengths ([1, 2])"),
    ],
)
def test_dataframe_split_shapes_that_do_not_fit_are_a_400(
    split: dict[str, object], fragment: str
) -> None:
    body = json.dumps({"dataframe_split": split}).encode()
    with pytest.raises(MalformedRequest) as raised:
        parse_body(body, "application/json")
    assert (raised.value.status_code, raised.value.error_code) == (400, "invalid_format")
    assert fragment in raised.value.message


def test_a_matching_index_is_kept() -> None:
    body = {"dataframe_split": {"columns": ["a"], "index": ["r1", 7], "data": [[1.0], [2.0]]}}
    payload = parse_body(json.dumps(body).encode(), "application/json")
    assert payload.has_index and payload.rows == ((1.0,), (2.0,))


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e400"])
def test_csv_numbers_must_be_finite(cell: str) -> None:
    with pytest.raises(MalformedRequest) as raised:
        parse_body(f"a,b\n1.0,2\n3.0,{cell}\n".encode(), "text/csv")
    assert raised.value.error_code == "non_finite_number"
    assert raised.value.message.startswith(f"CSV line 3, column 'b': {cell!r} is not a finite")


def test_a_csv_header_names_each_column_once() -> None:
    with pytest.raises(MalformedRequest) as raised:
        parse_body(b"a,b,a\n1,2,3\n", "text/csv")
    assert raised.value.message.startswith("the CSV header names 'a' more than once")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"inputs": {"x": [1e400]}}', "non_finite_number"),
        (b'{"inputs": {"x": [NaN]}}', "non_finite_number"),
        (b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", "too_deep"),
    ],
)
def test_json_bodies_go_through_the_bounded_parser(body: bytes, code: str) -> None:
    with pytest.raises(MalformedRequest) as raised:
        parse_body(body, "application/json")
    assert raised.value.error_code == code
