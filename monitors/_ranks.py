"""Average ranks and the Mann-Whitney U test, without importing ``scipy.stats``.

:func:`average_ranks` ranks values as ``scipy.stats.rankdata(method="average")`` does, and
returns the size of every group of ties. :func:`mann_whitney_greater` is
``scipy.stats.mannwhitneyu(x, y, alternative="greater")``: the same U and, where SciPy uses the
normal approximation (both samples above 8, or any ties), the same tie- and
continuity-corrected p-value. Small samples without ties get SciPy's exact distribution.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitors import _normal as normal
from monitors._validate import FloatArray

EXACT_MAX_N = 8  # SciPy's exact distribution is used when both samples are this small (no ties)


def average_ranks(values: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """1-based ranks, ties sharing their average rank; and the size of each group of ties."""
    data = np.asarray(values)
    n = data.size
    order = np.argsort(data, kind="mergesort")
    ordered = data[order]
    starts_group = np.empty(n, dtype=bool)
    starts_group[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.append(starts, n))
    group = np.cumsum(starts_group) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = (starts + (sizes + 1) / 2.0)[group]
    return ranks, sizes


def mann_whitney_greater(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """(U of ``x``, one-sided p-value that ``x`` tends to be greater than ``y``)."""
    n1, n2 = x.size, y.size
    ranks, ties = average_ranks(np.concatenate([x, y]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    if n1 <= EXACT_MAX_N and n2 <= EXACT_MAX_N and not np.any(ties > 1):
        from scipy import stats  # the exact distribution; rare (gates need 30 a side)

        return u1, float(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    n = n1 + n2
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    spread = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = u1 - n1 * n2 / 2 - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / spread
    return u1, min(1.0, max(0.0, normal.sf(float(z))))
