"""``rollout replay``'s reading of a rows file and its argument types (no router here: the
replay itself is tested on a real router in tests/integration/test_router_process.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from rollout import replay
from rollout.cli.parser import bounded, clients, http_url
from rollout.replay import ReplayError, ReplayResult, _cells, read_rows


def test_a_csv_splits_into_inputs_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b,y\n1,x,0\n2.5,,1\n")
    frame, labels = read_rows(path, "y")
    assert list(frame.columns) == ["a", "b"] and labels == [0, 1]
    assert _cells(frame) == [[1.0, "x"], [2.5, None]]  # a missing cell is null, not NaN
    assert all(type(v) is float for v, _ in _cells(frame))  # Python values, JSON-ready


def test_a_row_without_its_label_is_labelled_none(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,y\n1,0\n2,\n3,1\n")  # the second row's label never came
    frame, labels = read_rows(path, "y")
    assert labels == [0.0, None, 1.0] and _cells(frame) == [[1], [2], [3]]


def test_json_lines_without_a_label(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"x": 1, "s": "a"}\n{"x": 2, "s": "b"}\n')
    frame, labels = read_rows(path, None)
    assert labels is None and _cells(frame) == [[1, "a"], [2, "b"]]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("rows.txt", "a\n1\n", "expected a .csv, .jsonl, .ndjson, .parquet file, got 'rows.txt'"),
        ("rows.csv", "", "rows.csv is not a readable table"),
        ("rows.csv", "a,y\n", "rows.csv holds no rows"),
        ("rows.jsonl", "{not json\n", "rows.jsonl is not a readable table"),
        ("rows.csv", "a,y\n1,0\n", "--label: no column 'label' in rows.csv; it has a, y"),
    ],
)
def test_unusable_files_are_refused_by_name(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ReplayError, match=re.escape(message)):
        read_rows(path, "label")


def test_size_and_row_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a\n" + "1\n" * 5)
    monkeypatch.setattr(replay, "MAX_ROWS", 4)
    with pytest.raises(ReplayError, match="more than 4 rows"):
        read_rows(path, None)
    monkeypatch.setattr(replay, "MAX_FILE_BYTES", 8)
    with pytest.raises(ReplayError, match="at most 0 MiB"):
        read_rows(path, None)
    with pytest.raises(ReplayError, match="no file at"):
        read_rows(tmp_path / "missing.csv", None)


def test_result_is_ok_only_when_everything_went_through() -> None:
    result = ReplayResult(requests=3, sent=3)
    assert result.ok
    result.labels_refused = 1
    assert not result.ok and result.as_json()["labels_refused"] == 1
    assert not ReplayResult(requests=3, sent=2).ok


def test_argument_types() -> None:
    assert http_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    for text in ("127.0.0.1:8080", "ftp://h", "http://h:99999", "http://"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected an http"):
            http_url(text)
    assert clients("8") == 8
    for text in ("0", "65", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            clients(text)
    seconds = bounded(0, 10, "seconds")
    assert seconds("2.5") == 2.5
    for text in ("nan", "-1", "11", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected seconds"):
            seconds(text)
