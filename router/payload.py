"""Parse a scoring request body once, without pandas, into a :class:`Payload`.

The MLflow scoring protocol (what ``mlflow models serve`` accepts):

- ``application/json``: an object with exactly one of ``dataframe_split``,
  ``dataframe_records``, ``instances``, ``inputs``, and optionally ``params`` (an object);
- ``text/csv``: a header row, then one row per input (UTF-8).

Whenever the input is a table with named columns (the common case: records, a split frame with
``columns``, ``instances``/``inputs`` as records or as column lists, CSV) the payload also holds
it as ``columns`` + ``rows`` so the router can check it against a signature, pick a sticky key
from a field and log it without building a DataFrame. Other shapes (positional lists, tensors)
keep only the raw ``data`` and are converted by MLflow's own parser later.

JSON is decoded by :func:`router.jsonbody.loads`: at most 64 levels deep, every number finite
(``NaN``, ``Infinity`` and ``1e400`` are refused with the field's path), integers beyond 64 bits
kept as integers, as ``mlflow models serve`` keeps them. CSV numbers must be finite too.

Errors: :class:`~router.errors.UnsupportedContentType` (415) for anything but JSON or CSV in
UTF-8, :class:`~router.errors.MalformedRequest` (400) for a body that is not valid JSON/CSV or
not in one of the four formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from router import jsonbody
from router.errors import MalformedRequest, UnsupportedContentType

JSON: Final = "application/json"
CSV: Final = "text/csv"
DATAFRAME_SPLIT: Final = "dataframe_split"
DATAFRAME_RECORDS: Final = "dataframe_records"
INSTANCES: Final = "instances"
INPUTS: Final = "inputs"
FORMATS: Final = (DATAFRAME_SPLIT, DATAFRAME_RECORDS, INSTANCES, INPUTS)
CSV_FORMAT: Final = "csv"
_MAX_NAMED: Final = 5


class _Missing:
    """A cell a record does not have (distinct from JSON ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Payload:
    format: str  # one of FORMATS, or "csv"
    data: Any  # the JSON value under the format key; the CSV text for "csv"
    params: dict[str, Any] | None = None
    columns: tuple[str, ...] | None = None  # set when the input is a table with named columns
    rows: tuple[tuple[Any, ...], ...] | None = None  # aligned with columns; MISSING where absent
    has_index: bool = False  # dataframe_split carried an "index"

    @property
    def tabular(self) -> bool:
        return self.columns is not None and self.rows is not None

    @property
    def n_rows(self) -> int | None:
        return len(self.rows) if self.rows is not None else None

    def records(self) -> list[Any]:
        """The input rows as the prediction log stores them: objects, or lists when unnamed."""
        if self.columns is not None and self.rows is not None:
            columns = self.columns
            return [
                dict(zip(columns, row, strict=True))
                if MISSING not in row
                else {c: v for c, v in zip(columns, row, strict=True) if v is not MISSING}
                for row in self.rows
            ]
        data = self.data
        if self.format == DATAFRAME_SPLIT and isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, list):
            return list(data)
        return [data]

    def field(self, name: str) -> str | None:
        """The first row's value of column ``name`` as text (a sticky key), if there is one."""
        if self.columns is None or self.rows is None or not self.rows:
            return None
        try:
            index = self.columns.index(name)
        except ValueError:
            return None
        value = self.rows[0][index]
        if value is MISSING or value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)


def media_type(content_type: str | None) -> str:
    """``application/json`` or ``text/csv`` from a Content-Type header, else 415."""
    if not content_type:
        raise UnsupportedContentType(
            "the request has no Content-Type; send 'application/json' or 'text/csv'"
        )
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    if mime not in (JSON, CSV):
        raise UnsupportedContentType(
            f"content type {mime!r} is not supported; send 'application/json' or 'text/csv'"
        )
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedContentType(
                f"charset {value.strip()!r} is not supported; the router reads UTF-8 only"
            )
    return mime


def parse_body(body: bytes, content_type: str | None) -> Payload:
    """The payload of a scoring request (see the module docstring for the errors)."""
    mime = media_type(content_type)
    if mime == CSV:
        return parse_csv(body)
    return parse_json(body)


def parse_json(body: bytes) -> Payload:
    return parse_document(jsonbody.loads(body))


def parse_document(decoded: Any) -> Payload:
    """A payload from an already decoded JSON document."""
    if not isinstance(decoded, dict):
        kind = "a list" if isinstance(decoded, list) else f"a {type(decoded).__name__}"
        raise MalformedRequest(
            f"the body must be a JSON object with exactly one of {', '.join(FORMATS)}; got {kind}",
            error_code="invalid_format",
        )
    present = [key for key in FORMATS if key in decoded]
    if len(present) != 1:
        found = ", ".join(repr(k) for k in decoded) or "none"
        raise MalformedRequest(
            f"the body must have exactly one of {', '.join(FORMATS)}; its keys are {found}",
            error_code="invalid_format",
        )
    fmt = present[0]
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict):
        raise MalformedRequest(
            f"'params' must be an object, got {type(params).__name__}", error_code="invalid_format"
        )
    data = decoded[fmt]
    if _empty(fmt, data):
        raise MalformedRequest(
            f"'{fmt}' holds no rows; send at least one to predict on", error_code="empty_input"
        )
    if fmt == DATAFRAME_SPLIT:
        return _split(data, params)
    if fmt == DATAFRAME_RECORDS:
        if not isinstance(data, list):
            raise MalformedRequest(
                "'dataframe_records' must be a list of records (objects), "
                f"got {type(data).__name__}",
                error_code="invalid_format",
            )
        return _from_records(fmt, data, params)
    if fmt == INSTANCES:
        return _from_records(fmt, data, params)
    return _inputs(data, params)


def _empty(fmt: str, data: Any) -> bool:
    """No rows at all: an empty list or object (``dataframe_split``: empty ``data``), which
    MLflow would answer with a pandas message in plain text."""
    if fmt == DATAFRAME_SPLIT and isinstance(data, dict):
        return data.get("data") == []
    return (isinstance(data, list | dict)) and not data


def _split(data: Any, params: dict[str, Any] | None) -> Payload:
    if not isinstance(data, dict):
        raise MalformedRequest(
            "'dataframe_split' must be an object with 'data' and optionally 'columns' and "
            f"'index', got {type(data).__name__}",
            error_code="invalid_format",
        )
    extra = set(data) - {"columns", "data", "index"}
    if "data" not in data or extra:
        raise MalformedRequest(
            "'dataframe_split' must have 'data' and optionally 'columns' and 'index'; "
            f"it has {sorted(data)}",
            error_code="invalid_format",
        )
    rows = data["data"]
    columns = data.get("columns")
    if not isinstance(rows, list):
        raise MalformedRequest(
            f"'dataframe_split.data' must be a list of rows, got {type(rows).__name__}",
            error_code="invalid_format",
        )
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        raise MalformedRequest(
            "'dataframe_split.columns' must be a list of column names",
            error_code="invalid_format",
        )
    if columns is not None and len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})[:_MAX_NAMED]
        raise MalformedRequest(
            f"'dataframe_split.columns' names {', '.join(repr(c) for c in repeated)} more than "
            "once; each column must be named once",
            error_code="invalid_format",
        )
    index = data.get("index")
    has_index = index is not None
    if has_index:
        _check_index(index, len(rows))
    if not all(isinstance(row, list) for row in rows):
        return Payload(DATAFRAME_SPLIT, data, params, has_index=has_index)  # MLflow's road
    if columns is None:
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            raise MalformedRequest(
                f"'dataframe_split.data' rows have different lengths ({sorted(widths)[:5]}); "
                "every row needs one value per column",
                error_code="invalid_format",
            )
        return Payload(DATAFRAME_SPLIT, data, params, has_index=has_index)
    width = len(columns)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise MalformedRequest(
                f"'dataframe_split.data' row {index} has {len(row)} values but 'columns' "
                f"names {width}",
                error_code="invalid_format",
            )
    return Payload(
        DATAFRAME_SPLIT,
        data,
        params,
        columns=tuple(columns),
        rows=tuple(tuple(row) for row in rows),
        has_index=has_index,
    )


def _check_index(index: Any, n_rows: int) -> None:
    """``dataframe_split.index``: a list of one scalar label per row of ``data``."""
    if not isinstance(index, list):
        raise MalformedRequest(
            f"'dataframe_split.index' must be a list of row labels, got {type(index).__name__}",
            error_code="invalid_format",
        )
    if len(index) != n_rows:
        raise MalformedRequest(
            f"'dataframe_split.index' has {len(index)} labels but 'dataframe_split.data' has "
            f"{n_rows} rows; give one label per row",
            error_code="invalid_format",
        )
    if not all(isinstance(label, str | int | float) for label in index):
        raise MalformedRequest(
            "'dataframe_split.index' labels must be strings or numbers",
            error_code="invalid_format",
        )


def _from_records(fmt: str, data: Any, params: dict[str, Any] | None) -> Payload:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        return Payload(fmt, data, params)
    columns = _record_columns(data)
    rows = tuple(tuple(record.get(c, MISSING) for c in columns) for record in data)
    return Payload(fmt, data, params, columns=columns, rows=rows)


def _record_columns(records: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    first = tuple(records[0])
    if all(len(r) == len(first) and all(c in r for c in first) for r in records[1:]):
        return first
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return tuple(seen)


def _inputs(data: Any, params: dict[str, Any] | None) -> Payload:
    if isinstance(data, list):
        return _from_records(INPUTS, data, params)
    if not isinstance(data, dict) or not data:
        return Payload(INPUTS, data, params)
    values = list(data.values())
    columns = tuple(data)
    if all(isinstance(v, list) for v in values):
        length = len(values[0])
        if length and all(len(v) == length for v in values):
            return Payload(
                INPUTS, data, params, columns=columns, rows=tuple(zip(*values, strict=True))
            )
        return Payload(INPUTS, data, params)
    if not any(isinstance(v, list | dict) for v in values):
        return Payload(INPUTS, data, params, columns=columns, rows=(tuple(values),))
    return Payload(INPUTS, data, params)


def parse_csv(body: bytes) -> Payload:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"the CSV body is not UTF-8 text: {exc.reason} at byte {exc.start}",
            error_code="malformed_csv",
        ) from exc
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise MalformedRequest(
            f"the body is not valid CSV: {exc}", error_code="malformed_csv"
        ) from exc
    table = [row for row in table if row]
    if not table:
        raise MalformedRequest(
            "the CSV body is empty; expected a header row", error_code="malformed_csv"
        )
    header = tuple(table[0])
    width = len(header)
    if len(set(header)) != width:
        repeated = sorted({c for c in header if header.count(c) > 1})[:_MAX_NAMED]
        raise MalformedRequest(
            f"the CSV header names {', '.join(repr(c) for c in repeated)} more than once; each "
            "column must be named once",
            error_code="malformed_csv",
        )
    for index, row in enumerate(table[1:], start=2):
        if len(row) != width:
            raise MalformedRequest(
                f"CSV line {index} has {len(row)} fields but the header names {width}",
                error_code="malformed_csv",
            )
    rows = tuple(
        tuple(_csv_cell(cell, line, name) for cell, name in zip(row, header, strict=True))
        for line, row in enumerate(table[1:], start=2)
    )
    return Payload(CSV_FORMAT, text, None, columns=header, rows=rows)


def _csv_cell(cell: str, line: int, column: str) -> Any:
    """A CSV field as the value it spells: empty → None, numbers → int/float, else the text;
    400 for a number that is not finite (``nan``, ``inf``, ``1e400``)."""
    if cell == "":
        return None
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        number = float(cell)
    except ValueError:
        return cell
    if math.isfinite(number):
        return number
    shown = cell if len(cell) <= 24 else f"{cell[:20]}..."
    raise MalformedRequest(
        f"CSV line {line}, column {column[:40]!r}: {shown!r} is not a finite number; send a "
        "finite number, or an empty field for a missing value",
        error_code="non_finite_number",
    )
