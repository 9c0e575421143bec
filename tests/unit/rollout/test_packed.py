"""rollout/store/packed.py: what is kept of pruned rows comes back as it went in (floats to 7
significant digits), rows with different names included; anything else is a ValueError."""

from __future__ import annotations

import pytest

from rollout.store.packed import by_column, from_columns, pack, short, unpack


def test_rows_by_column_come_back_with_every_name() -> None:
    rows: list[dict[str, object]] = [{"a": 1.0 / 3, "b": "x"}, {"b": "y", "c": 2}]
    body = by_column(rows, max_columns=10)
    assert body["columns"] == ["a", "b", "c"]
    back = from_columns(unpack(pack(body)))
    assert back == [{"a": 0.3333333, "b": "x", "c": None}, {"a": None, "b": "y", "c": 2}]
    assert by_column(rows, max_columns=2)["columns"] == ["a", "b"]
    assert by_column([], max_columns=2) == {"columns": [], "rows": []}


def test_short_keeps_seven_significant_digits_of_floats_only() -> None:
    assert short(123456.789) == 123456.8
    assert short(1e-9 / 3) == pytest.approx(3.333333e-10, rel=0, abs=1e-17)
    assert short(7) == 7 and short("7.123456789") == "7.123456789"


@pytest.mark.parametrize("text", ["", "not base64!", "aGVsbG8="])  # the last: base64, not zlib
def test_what_was_not_packed_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a packed body"):
        unpack(text)
