"""Counting categorical values of both arms into one 2 x k contingency table.

Categories are the union of the values seen in either arm, so no column of the table is empty.
Values may be any hashable: numbers, strings, bools, None, or a mix (numpy arrays of one dtype
are counted with `numpy.unique`; mixed object arrays fall back to `collections.Counter`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

import numpy as np
import numpy.typing as npt
from scipy import special


def contingency_table(
    baseline: npt.NDArray[np.generic], canary: npt.NDArray[np.generic]
) -> tuple[list[Hashable], npt.NDArray[np.int64]]:
    """Return the categories and a 2 x k table: row 0 baseline counts, row 1 canary counts."""
    counts: dict[Hashable, list[int]] = {}
    for row, (arm, values) in enumerate((("baseline", baseline), ("canary", canary))):
        for label, count in _count(values, arm):
            counts.setdefault(label, [0, 0])[row] += count
    labels = list(counts)
    table = np.array([[counts[label][row] for label in labels] for row in (0, 1)], dtype=np.int64)
    return labels, table.reshape(2, len(labels))


def _count(values: npt.NDArray[np.generic], arm: str) -> Iterable[tuple[Hashable, int]]:
    if values.size == 0:
        return []
    try:
        labels, counts = np.unique(values, return_counts=True)
    except TypeError:  # unorderable mix such as None and str: count without sorting
        try:
            return Counter(values.tolist()).items()
        except TypeError as exc:
            raise ValueError(f"{arm} values must be hashable categories: {exc}") from None
    return zip(labels.tolist(), counts.tolist(), strict=True)


def pearson_chi2(table: npt.NDArray[np.int64]) -> tuple[float, float, int]:
    """Pearson's chi-square test of independence on a 2-D table with no empty row or column:
    (statistic, p-value, degrees of freedom), as ``scipy.stats.chi2_contingency(table,
    correction=False)`` computes them (expected counts from the margins, the p-value from the
    chi-square survival function) without importing ``scipy.stats``."""
    observed = np.asarray(table, dtype=np.float64)
    expected = np.multiply(observed.sum(axis=1, keepdims=True), observed.sum(axis=0)) / float(
        observed.sum()
    )
    dof = int(expected.size - sum(expected.shape) + expected.ndim - 1)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(special.chdtrc(dof, statistic)), dof
