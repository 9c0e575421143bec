"""router.jsonbody: bounded JSON for request bodies (depth, finite numbers, never a crash)."""

from __future__ import annotations

import json
import random
import sys

import pytest

from router.errors import MalformedRequest
from router.jsonbody import MAX_DEPTH, loads, nesting_depth


def _refused(body: bytes) -> MalformedRequest:
    with pytest.raises(MalformedRequest) as raised:
        loads(body)
    assert raised.value.status_code == 400
    return raised.value


@pytest.mark.parametrize(
    ("body", "where", "text"),
    [
        (b'{"inputs": {"x": [1e400]}}', "inputs.x[0]", "1e400"),
        (b'{"inputs": {"x": [-1E+999]}}', "inputs.x[0]", "-1E+999"),
        (b'{"dataframe_split": {"data": [[1, NaN]]}}', "dataframe_split.data[0][1]", "NaN"),
        (b'{"dataframe_records": [{"a": 1}, {"a": Infinity}]}', "dataframe_records[1].a", "Inf"),
        (b'{"inputs": [-Infinity]}', "inputs[0]", "-Infinity"),
        (b'{"x": 1' + b"0" * 400 + b".5}", "x", "10000000000000000000..."),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(
    body: bytes, where: str, text: str
) -> None:
    error = _refused(body)
    assert error.error_code == "non_finite_number"
    assert error.message.startswith(f"{where}: {text}")
    assert "is not a finite number" in error.message


def test_large_finite_numbers_and_big_integers_are_kept() -> None:
    assert loads(b'{"x": 1.7e308, "y": -1e-400}') == {"x": 1.7e308, "y": -0.0}
    big = 2**70
    assert loads(json.dumps({"x": big}).encode()) == {"x": big}  # an int, as MLflow keeps it
    assert type(loads(b'{"x": 12345678901234567890123}')["x"]) is int


def test_an_integer_longer_than_python_converts_is_a_400_not_a_value_error() -> None:
    digits = sys.get_int_max_str_digits() + 1
    error = _refused(b'{"x": [' + b"7" * digits + b"]}")
    assert error.error_code == "number_too_long"
    assert error.message.startswith(f"x[0]: an integer of {digits} digits")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000, 100_000])
def test_deep_nesting_is_a_400_never_a_recursion_error(depth: int) -> None:
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        error = _refused(opener * depth + b"1" + closer * depth)
        assert error.error_code == "too_deep"
        assert f"{depth} levels deep; at most {MAX_DEPTH}" in error.message
    unclosed = _refused(b"[" * depth)  # not even JSON: refused before any decoder recurses
    assert unclosed.error_code == "too_deep"


def test_exactly_the_limit_is_accepted() -> None:
    body = b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    value = loads(body)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == [1]


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"[]", 1),
        (b'[[1], {"a": [2]}]', 3),
        (b'["[[[[", {"k]": "}}"}]', 2),  # brackets inside strings do not count
        (b'["a\\"[[[", [1]]', 2),  # nor after an escaped quote
        (b'["a\\\\", [[1]]]', 3),  # an escaped backslash ends the string
        (b'"no brackets"', 0),
    ],
)
def test_nesting_depth_counts_only_structure(body: bytes, depth: int) -> None:
    assert nesting_depth(body) == depth


def test_strings_full_of_brackets_are_not_too_deep() -> None:
    body = json.dumps({"text": "[" * 10_000, "more": ["{" * 500]}).encode()
    assert loads(body)["text"] == "[" * 10_000


def test_many_shallow_rows_are_fine() -> None:
    rows = [{"a": 1.5, "b": [1, 2], "c": "x"}] * 5000
    assert loads(json.dumps({"dataframe_records": rows}).encode()) == {"dataframe_records": rows}


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b"\xff{}", "malformed_json", "not UTF-8 text"),
        (b'{"a": 1', "malformed_json", "line 1 column 8"),
        (b"", "malformed_json", "not valid JSON"),
        (b'{"x": "\\ud800"}', "invalid_string", "x: the string holds a lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "invalid_string", "the string holds a lone UTF-16 surrogate"),
    ],
)
def test_malformed_bodies_are_400_with_a_reason(body: bytes, code: str, fragment: str) -> None:
    error = _refused(body)
    assert error.error_code == code
    assert fragment in error.message


def test_a_surrogate_pair_is_valid_text() -> None:
    assert loads(b'{"x": "\\ud83d\\ude00"}') == {"x": "\U0001f600"}


def test_an_unterminated_string_of_escaped_quotes_is_refused_quickly() -> None:
    # Every quote is escaped, so no string ever ends: a naive scanner rescans from each one.
    body = b'["' + b'\\"' * 200_000 + b"[" * 100
    error = _refused(body)
    assert error.error_code == "malformed_json"


def test_random_bodies_give_a_document_or_a_400_never_another_error() -> None:
    """A seeded fuzz over JSON's own characters: whatever comes in, ``loads`` and the payload
    parser answer with a value or a 400, never with another exception."""
    from router.payload import parse_body

    rng = random.Random(11)
    alphabet = [*b'[]{}",:\\0123456789eE.+- ', *b"NaInfity", *b"utu", 0, 0xFF, 0xED]
    seeds = [
        b'{"dataframe_split": {"columns": ["a"], "index": [0], "data": [[1.5]]}}',
        b'{"dataframe_records": [{"a": 1e308, "b": "x"}], "params": {}}',
        b'{"inputs": {"a": [1, 2], "b": [3, 4]}}',
        b'{"instances": [[1.0, 2.0]]}',
    ]
    outcomes = {"value": 0, "400": 0}
    for _ in range(3000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(body) + 1)
            if rng.random() < 0.5 and body:
                del body[min(position, len(body) - 1)]
            else:
                body[position:position] = bytes([rng.choice(alphabet)]) * rng.choice([1, 1, 70])
        try:
            loads(bytes(body))
            parse_body(bytes(body), "application/json")
            outcomes["value"] += 1
        except MalformedRequest:
            outcomes["400"] += 1
    assert outcomes["value"] > 50 and outcomes["400"] > 2000  # both roads were walked
