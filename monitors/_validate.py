"""Parameter and data validation shared by the gates.

Every check raises `ValueError` naming the parameter, what it got and what was expected.
Array helpers turn list-likes into 1-D numpy arrays and say which arm was wrong.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return `alpha` as a float if it is a significance level in (0, 0.5)."""
    value = _real(alpha, name)
    if not 0.0 < value < 0.5:
        raise ValueError(f"{name} must be a significance level in (0, 0.5), got {alpha!r}")
    return value


def check_min_n(min_n: int) -> int:
    """Return `min_n` if it is an int >= 1 (the observations each arm needs for a verdict)."""
    if isinstance(min_n, bool) or not isinstance(min_n, numbers.Integral) or min_n < 1:
        raise ValueError(f"min_n must be an int >= 1, got {min_n!r}")
    return int(min_n)


def check_gate(gate: str) -> str:
    """Return `gate` if it is a non-empty string."""
    if not isinstance(gate, str) or not gate.strip():
        raise ValueError(f"gate must be a non-empty string, got {gate!r}")
    return gate


def check_fraction(value: float, name: str, *, low_inclusive: bool = True) -> float:
    """Return `value` if it lies in [0, 1) (or (0, 1) with ``low_inclusive=False``)."""
    number = _real(value, name)
    low_ok = number >= 0.0 if low_inclusive else number > 0.0
    if not (low_ok and number < 1.0):
        interval = "[0, 1)" if low_inclusive else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def check_bound(value: float, name: str, *, minimum: float, strict: bool) -> float:
    """Return `value` if it is finite and > `minimum` (``strict``) or >= `minimum`."""
    number = _real(value, name)
    ok = number > minimum if strict else number >= minimum
    if not (math.isfinite(number) and ok):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")
    return number


def check_count(value: int, name: str) -> int:
    """Return `value` if it is a non-negative int (a count of requests or errors)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def as_1d(values: npt.ArrayLike, arm: str) -> npt.NDArray[np.generic]:
    """Return `values` as a 1-D numpy array; float arrays must hold no NaN or inf."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{arm} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(
            f"{arm} holds {bad} NaN/inf value(s); drop them or encode them as a category"
        )
    if array.dtype.kind == "c":
        raise ValueError(f"{arm} holds complex numbers; expected real or categorical values")
    return array


def as_numeric(values: npt.ArrayLike, arm: str, *, non_negative: bool = False) -> FloatArray:
    """Return `values` as a finite 1-D float64 array (bools and ints are accepted)."""
    array = as_1d(values, arm)
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{arm} must be numeric, got dtype {array.dtype}; "
            "use chi_square_test for categorical values"
        )
    numeric = array.astype(np.float64)
    if non_negative and numeric.size and float(numeric.min()) < 0.0:
        raise ValueError(f"{arm} must be >= 0, got minimum {float(numeric.min())!r}")
    return numeric


def as_bool(values: npt.ArrayLike, arm: str) -> npt.NDArray[np.bool_]:
    """Return `values` as a 1-D bool array; numbers must be exactly 0 or 1."""
    array = as_1d(values, arm)
    if array.dtype.kind == "b":
        return array.astype(np.bool_)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{arm} must be booleans (or 0/1), got dtype {array.dtype}")
    is_zero = array == 0
    if not (is_zero | (array == 1)).all():
        raise ValueError(f"{arm} must hold only 0/1 or True/False values")
    return np.asarray(~is_zero, dtype=np.bool_)


def _real(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN")
    return number
