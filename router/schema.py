"""A model version's input signature as the router checks it: plain Python, no pandas.

:meth:`InputSchema.check` walks the rows of a tabular :class:`~router.payload.Payload` once
and raises :class:`~router.errors.SignatureMismatch` (422) naming what is wrong:

- a required column missing from the input (all of them are named, up to five);
- a column the signature does not have (``mlflow models serve`` would drop it silently; the
  router refuses it, since it is almost always a misspelt or misplaced feature);
- a required cell that is missing or ``null`` (the row and the column);
- a value that cannot be the column's type (``"abc"`` or a list in a ``double`` column), or
  that no value of it can hold: a number beyond a ``float`` (32-bit) or ``double`` column's
  range, text spelling a non-finite number (``"NaN"``, ``"inf"``) in either (the model would
  otherwise receive infinity or NaN and fail, and the version would be blamed for the input).

It returns whether every value already has exactly its column's Python type (``float``/``int``
for numbers, ``bool``, ``str``). Then the router may build the model's input frame directly;
otherwise MLflow's own parser converts it (``"12.5"`` → 12.5, ``True`` → 1.0) as
``mlflow models serve`` would.

Only column-based signatures with names are checked here; tensor signatures, or none at all,
are left to MLflow (``from_mlflow`` returns ``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from router.errors import SignatureMismatch
from router.payload import MISSING, Payload

# MLflow scalar types → the numpy dtype MLflow casts a column to (DataType.to_numpy()).
NUMPY_DTYPES: Final[dict[str, str]] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
}
_FLOATS: Final = frozenset({"double", "float"})
_INTS: Final = frozenset({"long", "integer"})
_MAX_NAMED: Final = 5
_DOUBLE_MAX: Final = 1.7976931348623157e308
_FLOAT_MAX: Final = {"double": _DOUBLE_MAX, "float": 3.4028234663852886e38}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # MLflow's name: double, long, string, ...; array/object/map/any for the rest
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[ColumnSpec, ...]

    @classmethod
    def from_mlflow(cls, schema: Any) -> InputSchema | None:
        """The router's view of an ``mlflow.types.Schema``; None unless named columns."""
        if schema is None:
            return None
        try:
            specs = schema.to_dict()
        except Exception:
            return None
        columns = []
        for spec in specs:
            name = spec.get("name") if isinstance(spec, dict) else None
            kind = spec.get("type") if isinstance(spec, dict) else None
            if not isinstance(name, str) or not isinstance(kind, str) or kind == "tensor":
                return None
            columns.append(ColumnSpec(name, kind, bool(spec.get("required", True))))
        return cls(tuple(columns)) if columns else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def _known(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)

    @cached_property
    def _all_doubles(self) -> bool:
        return all(c.type == "double" for c in self.columns)

    @property
    def scalar(self) -> bool:
        """Every column has a scalar type the router can build a frame for."""
        return all(c.type in NUMPY_DTYPES for c in self.columns)

    def example_row(self) -> dict[str, Any]:
        """One synthetic row (zeros, ``False``, ``""``) to warm a model up with."""
        fill = {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False}
        return {c.name: fill.get(c.type, "") for c in self.columns if c.type in NUMPY_DTYPES}

    def check(self, payload: Payload, where: str) -> bool:
        """Raise 422 naming what does not match; True if every value has its exact type."""
        if payload.columns is None or payload.rows is None:
            return False
        index = {name: i for i, name in enumerate(payload.columns)}
        missing = [c.name for c in self.columns if c.required and c.name not in index]
        if missing:
            named = ", ".join(repr(m) for m in missing[:_MAX_NAMED])
            more = f" and {len(missing) - _MAX_NAMED} more" if len(missing) > _MAX_NAMED else ""
            noun = "column" if len(missing) == 1 else "columns"
            raise SignatureMismatch(
                f"the input is missing {noun} {named}{more}, required by the signature of "
                f"{where} ({len(self.columns)} columns: {_describe(self.columns)})"
            )
        known = self._known
        extra = [name for name in payload.columns if name not in known]
        if extra:
            named = ", ".join(repr(e) for e in extra[:_MAX_NAMED])
            more = f" and {len(extra) - _MAX_NAMED} more" if len(extra) > _MAX_NAMED else ""
            noun = "column" if len(extra) == 1 else "columns"
            raise SignatureMismatch(
                f"the input has {noun} {named}{more} that the signature of {where} does not "
                f"have ({len(self.columns)} columns: {_describe(self.columns)})"
            )
        rows = payload.rows
        if not rows:
            raise SignatureMismatch(f"the input has no rows; {where} needs at least one")
        if self._all_doubles and all(
            type(value) is float or (type(value) is int and -_DOUBLE_MAX < value < _DOUBLE_MAX)
            for row in rows
            for value in row
        ):
            return True  # every cell a (finite) number, every column a double: nothing to convert
        exact = True
        for spec in self.columns:
            position = index.get(spec.name)
            if position is None:
                continue
            for row_number, row in enumerate(rows):
                if not _cell_ok(row[position], spec, row_number, where):
                    exact = False
        return exact


def _cell_ok(value: Any, spec: ColumnSpec, row: int, where: str) -> bool:
    """True if ``value`` has exactly the column's type; raise 422 if it cannot have it."""
    kind = spec.type
    if value is MISSING or value is None:
        if spec.required:
            state = "missing" if value is MISSING else "null"
            raise SignatureMismatch(
                f"row {row}: column {spec.name!r} is {state}, but the signature of {where} "
                f"requires a {kind}"
            )
        return False
    cls = type(value)
    if kind in _FLOATS:
        if cls is float or cls is int:
            if -_FLOAT_MAX[kind] <= value <= _FLOAT_MAX[kind]:
                return True
            raise SignatureMismatch(
                f"row {row}: column {spec.name!r} of {where} expects a {kind}, got "
                f"{_show(value)}, beyond the largest {kind} ({_FLOAT_MAX[kind]:g})"
            )
        if cls is str:
            if not math.isfinite(_parse(float, value, spec, row, where)):
                raise SignatureMismatch(
                    f"row {row}: column {spec.name!r} of {where} expects a finite {kind}, got "
                    f"{_show(value)}"
                )
            return False
        if cls is bool:
            return False
    elif kind in _INTS:
        if cls is int:
            return True
        if cls is str:
            _parse(int, value, spec, row, where)
            return False
        if cls is bool or cls is float:
            return False
    elif kind == "boolean":
        return cls is bool
    elif kind == "string":
        return cls is str
    else:
        return False
    raise SignatureMismatch(
        f"row {row}: column {spec.name!r} of {where} expects a {kind}, got {_show(value)}"
    )


def _parse(
    convert: type[float] | type[int], value: str, spec: ColumnSpec, row: int, where: str
) -> float:
    try:
        return convert(value)
    except ValueError:
        raise SignatureMismatch(
            f"row {row}: column {spec.name!r} of {where} expects a {spec.type}, got {_show(value)}"
        ) from None


def _show(value: Any) -> str:
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(columns: tuple[ColumnSpec, ...]) -> str:
    shown = ", ".join(f"{c.name!r} ({c.type})" for c in columns[:_MAX_NAMED])
    return shown + (", ..." if len(columns) > _MAX_NAMED else "")
