"""Bin edges at the baseline's quantiles, shared by PSI and the streaming summaries."""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from monitors._validate import FloatArray, as_numeric

PSI_MIN_SHARE = 1e-4


def psi_edges(baseline: npt.ArrayLike, bins: int = 10) -> FloatArray:
    """Bin edges at the baseline's quantiles: unique inner edges, outer edges -inf and +inf.

    A value x falls in bin i when ``edges[i] < x <= edges[i + 1]``. Ties in the baseline can
    merge quantiles, so there may be fewer than `bins` bins.
    """
    bins = check_bins(bins)
    values = as_numeric(baseline, "baseline")
    if values.size == 0:
        raise ValueError("baseline must be non-empty to place PSI bins")
    inner = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    return int(bins)
