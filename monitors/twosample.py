"""Column-level two-sample drift tests (canary vs baseline), and the per-column default choice.

Every test has the signature ``(baseline, canary, *, threshold) -> ColumnDrift`` and reports the
test name, statistic, p-value (None for distances), effect size, threshold, n per arm and
whether the column drifted. Thresholds and the drift rule follow Evidently 0.7 so the same
method gives the same number and verdict:

| test | statistic / effect size | drifted when | default threshold |
| --- | --- | --- | --- |
| ``ks`` | KS D (`scipy.stats.ks_2samp`) | p <= threshold | 0.05 |
| ``anderson`` | k-sample A-D (`anderson_ksamp`; p in [0.001, 0.25]) | p < threshold | 0.1 |
| ``chi_square`` | Pearson chi-square of the 2 x k table; Cramer's V | p < threshold | 0.05 |
| ``z`` | two-proportion z (pooled), two-sided; share difference | p < threshold | 0.05 |
| ``psi`` | PSI over baseline-quantile bins, shares clipped at 1e-4 | PSI >= threshold | 0.1 |
| ``wasserstein`` | W1 / max(std(baseline), 0.001) | distance >= threshold | 0.1 |
| ``jensen_shannon`` | JS distance (ln) of value shares or Sturges bins | >= threshold | 0.1 |

``chi_square`` here is the 2 x k contingency test (Evidently's is a goodness-of-fit test of the
canary counts against the baseline shares, a different number; both flag the same gross
changes). ``psi`` uses baseline-quantile bins (`monitors.drift.psi_edges`; pass ``edges`` to reuse
bins stored earlier), Evidently's uses Sturges bins over both arms.

`default_method` is Evidently's rule: with at most 1000 baseline rows, KS for numeric columns with
more than 5 distinct values, else chi-square (z for 2 values); above 1000 rows, normed
Wasserstein for numeric columns with more than 5 distinct values, else Jensen-Shannon.
`drift_table` runs it over the columns of two frames (threads; numpy sorts release the GIL).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors import _normal as normal
from monitors._bins import PSI_MIN_SHARE, psi_edges
from monitors._categories import contingency_table, pearson_chi2
from monitors._validate import FloatArray, as_1d, as_numeric
from monitors.names import COLUMN_TESTS

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "anderson": 0.1,
    "chi_square": 0.05,
    "z": 0.05,
    "psi": 0.1,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
}
SMALL_SAMPLE_ROWS = 1000
FEW_VALUES = 5
WASSERSTEIN_MIN_STD = 0.001


@dataclass(frozen=True)
class ColumnDrift:
    """Outcome of one two-sample test on one column."""

    column: str
    test: str
    statistic: float
    p_value: float | None
    effect_size: float
    threshold: float
    n_baseline: int
    n_canary: int
    drifted: bool

    def to_dict(self) -> dict[str, object]:
        def clean(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else float(value)

        return {
            "column": self.column,
            "test": self.test,
            "statistic": clean(self.statistic),
            "p_value": clean(self.p_value),
            "effect_size": clean(self.effect_size),
            "threshold": self.threshold,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "drifted": self.drifted,
        }


def ks(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, *, threshold: float = 0.05, column: str = ""
) -> ColumnDrift:
    """Two-sample Kolmogorov-Smirnov test."""

    b, c = _numeric_pair(baseline, canary)
    from scipy import stats

    res = stats.ks_2samp(b, c)
    p = float(res.pvalue)
    d = float(res.statistic)
    return _result(column, "ks", d, p, d, threshold, b, c, p <= threshold)


def anderson(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, *, threshold: float = 0.1, column: str = ""
) -> ColumnDrift:
    """k-sample Anderson-Darling test (p-value interpolated, capped to [0.001, 0.25])."""

    b, c = _numeric_pair(baseline, canary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "p-value capped/floored" notes
        from scipy import stats

        res = stats.anderson_ksamp([b, c])
    p = float(res.significance_level)
    statistic = float(res.statistic)
    return _result(column, "anderson", statistic, p, statistic, threshold, b, c, p < threshold)


def chi_square(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, *, threshold: float = 0.05, column: str = ""
) -> ColumnDrift:
    """Pearson chi-square test of the 2 x k table of category counts (no Yates correction)."""

    b, c = _pair(baseline, canary)
    _, table = contingency_table(b, c)
    if table.shape[1] < 2:
        return _result(column, "chi_square", 0.0, 1.0, 0.0, threshold, b, c, False)
    statistic, p, _ = pearson_chi2(table)
    cramers_v = math.sqrt(statistic / float(table.sum()))
    return _result(column, "chi_square", statistic, p, cramers_v, threshold, b, c, p < threshold)


def z_test(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, *, threshold: float = 0.05, column: str = ""
) -> ColumnDrift:
    """Two-sided pooled two-proportion z-test for a column with at most two values."""
    b, c = _pair(baseline, canary)
    labels, table = contingency_table(b, c)
    if len(labels) > 2:
        raise ValueError(f"z test needs at most 2 distinct values, got {len(labels)}")
    if len(labels) < 2:
        return _result(column, "z", 0.0, 1.0, 0.0, threshold, b, c, False)
    first = labels.index(_first_label(labels))
    n_b, n_c = int(table[0].sum()), int(table[1].sum())
    p_b, p_c = 1.0 - table[0, first] / n_b, 1.0 - table[1, first] / n_c
    pooled = (p_b * n_b + p_c * n_c) / (n_b + n_c)
    z = (p_b - p_c) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_b + 1.0 / n_c))
    p = float(2.0 * normal.sf(abs(z)))
    return _result(column, "z", z, p, p_c - p_b, threshold, b, c, p < threshold)


def psi(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    threshold: float = 0.1,
    column: str = "",
    bins: int = 10,
    edges: FloatArray | None = None,
) -> ColumnDrift:
    """Population stability index over baseline-quantile bins (or the stored `edges`)."""
    b, c = _numeric_pair(baseline, canary)
    cut = psi_edges(b, bins) if edges is None else np.asarray(edges, dtype=np.float64)
    value = psi_from_counts(bin_counts(b, cut), bin_counts(c, cut))
    return _result(column, "psi", value, None, value, threshold, b, c, value >= threshold)


def bin_counts(values: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Counts per bin; bin i holds ``edges[i] < x <= edges[i + 1]`` (outer edges +-inf)."""
    index = np.searchsorted(edges[1:-1], values, side="left")
    return np.bincount(index, minlength=edges.size - 1).astype(np.int64)


def psi_from_counts(baseline_counts: npt.ArrayLike, canary_counts: npt.ArrayLike) -> float:
    """PSI from bin counts of the two arms; empty bins are clipped to a 1e-4 share."""
    b = np.asarray(baseline_counts, dtype=np.float64)
    c = np.asarray(canary_counts, dtype=np.float64)
    b_share = np.clip(b / b.sum(), PSI_MIN_SHARE, None)
    c_share = np.clip(c / c.sum(), PSI_MIN_SHARE, None)
    return float(np.sum((c_share - b_share) * np.log(c_share / b_share)))


def wasserstein(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, *, threshold: float = 0.1, column: str = ""
) -> ColumnDrift:
    """First Wasserstein distance divided by max(std(baseline), 0.001) (Evidently's norm)."""
    b, c = _numeric_pair(baseline, canary)
    norm = max(float(np.std(b)), WASSERSTEIN_MIN_STD)
    value = wasserstein_sorted(np.sort(b), np.sort(c)) / norm
    return _result(column, "wasserstein", value, None, value, threshold, b, c, value >= threshold)


def wasserstein_sorted(baseline_sorted: FloatArray, canary_sorted: FloatArray) -> float:
    """Exact W1 of two sorted samples: the integral of |quantile difference| over (0, 1)."""
    n, m = baseline_sorted.size, canary_sorted.size
    if n == m:
        return float(np.mean(np.abs(baseline_sorted - canary_sorted)))
    # Breakpoints k/n and j/m on the common grid 1/(n m), merged (two sorted runs) and unique.
    grid = np.concatenate(
        [np.arange(1, n + 1, dtype=np.int64) * m, np.arange(1, m + 1, dtype=np.int64) * n]
    )
    grid.sort(kind="stable")
    grid = grid[np.concatenate(([True], grid[1:] != grid[:-1]))]
    widths = np.diff(grid, prepend=0) / (n * m)
    baseline_q = baseline_sorted[(grid + m - 1) // m - 1]
    canary_q = canary_sorted[(grid + n - 1) // n - 1]
    return float(np.sum(widths * np.abs(baseline_q - canary_q)))


def jensen_shannon(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    threshold: float = 0.1,
    column: str = "",
    categorical: bool | None = None,
) -> ColumnDrift:
    """Jensen-Shannon distance of the arms' value shares (Sturges bins for rich numerics)."""

    b, c = _pair(baseline, canary)
    if categorical is None:
        categorical = b.dtype.kind not in "biuf" or c.dtype.kind not in "biuf"
    if not categorical and np.unique(b).size > 20:
        b_num, c_num = b.astype(np.float64), c.astype(np.float64)
        edges = np.histogram_bin_edges(np.concatenate([b_num, c_num]), bins="sturges")
        b_share = np.histogram(b_num, edges)[0] / b.size
        c_share = np.histogram(c_num, edges)[0] / c.size
    else:
        _, table = contingency_table(b, c)
        b_share, c_share = table[0] / b.size, table[1] / c.size
    from scipy.spatial import distance

    value = float(distance.jensenshannon(b_share, c_share))
    return _result(
        column, "jensen_shannon", value, None, value, threshold, b, c, value >= threshold
    )


TESTS: dict[str, Callable[..., ColumnDrift]] = {
    "ks": ks,
    "anderson": anderson,
    "chi_square": chi_square,
    "z": z_test,
    "psi": psi,
    "wasserstein": wasserstein,
    "jensen_shannon": jensen_shannon,
}


def default_method(baseline: npt.ArrayLike, canary: npt.ArrayLike, *, categorical: bool) -> str:
    """Evidently 0.7's default test for a column (see the module docstring)."""
    b, c = _pair(baseline, canary)
    n_values = _distinct_up_to(b, c, FEW_VALUES + 1)
    if b.size <= SMALL_SAMPLE_ROWS:
        if categorical or n_values <= FEW_VALUES:
            return "chi_square" if n_values > 2 else "z"
        return "ks"
    if categorical or n_values <= FEW_VALUES:
        return "jensen_shannon"
    return "wasserstein"


def column_drift(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    method: str = "auto",
    threshold: float | None = None,
    categorical: bool | None = None,
    column: str = "",
) -> ColumnDrift:
    """Run `method` (or `default_method` for ``"auto"``) on one column."""
    b, c = _pair(baseline, canary)
    if categorical is None:
        categorical = b.dtype.kind not in "biuf" or c.dtype.kind not in "biuf"
    if method == "auto":
        method = default_method(b, c, categorical=categorical)
    if method not in TESTS:
        raise ValueError(f"method must be 'auto' or one of {COLUMN_TESTS}, got {method!r}")
    level = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    if method == "jensen_shannon":
        return jensen_shannon(b, c, threshold=level, column=column, categorical=categorical)
    return TESTS[method](b, c, threshold=level, column=column)


def drift_table(
    baseline: Any,
    canary: Any,
    *,
    columns: Sequence[str] | None = None,
    method: str | Mapping[str, str] = "auto",
    threshold: float | None = None,
    categorical: Sequence[str] = (),
    workers: int = 2,
) -> dict[str, ColumnDrift]:
    """Drift of every column (DataFrames or mappings of column -> values), in column order."""
    names = list(columns if columns is not None else baseline.keys())
    missing = [name for name in names if name not in canary]
    if missing:
        raise ValueError(f"canary lacks column(s) {missing}")

    def run(name: str) -> ColumnDrift:
        chosen = method if isinstance(method, str) else method.get(name, "auto")
        return column_drift(
            np.asarray(baseline[name]),
            np.asarray(canary[name]),
            method=chosen,
            threshold=threshold,
            categorical=True if name in categorical else None,
            column=name,
        )

    if workers <= 1 or len(names) <= 1:
        return {name: run(name) for name in names}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(names, pool.map(run, names), strict=True))


def _pair(
    baseline: npt.ArrayLike, canary: npt.ArrayLike
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]]:
    b, c = as_1d(baseline, "baseline"), as_1d(canary, "canary")
    if b.size == 0 or c.size == 0:
        raise ValueError(f"both arms need values (baseline {b.size}, canary {c.size})")
    return b, c


def _numeric_pair(baseline: npt.ArrayLike, canary: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    b, c = _pair(baseline, canary)
    return as_numeric(b, "baseline"), as_numeric(c, "canary")


def _distinct_up_to(b: npt.NDArray[np.generic], c: npt.NDArray[np.generic], cap: int) -> int:
    """Distinct values of both arms, exact up to `cap` (cheap for long numeric columns)."""
    if b.dtype.kind in "biuf" and b.size > 10 * cap:
        head = np.unique(b[: 10 * cap])
        if head.size >= cap:
            return head.size
    labels, _ = contingency_table(b, c)
    return len(labels)


def _first_label(labels: list[Any]) -> Any:
    """The smallest label (Evidently's reference category), by repr when unorderable."""
    try:
        return sorted(labels)[0]
    except TypeError:
        return min(labels, key=repr)


def _result(
    column: str,
    test: str,
    statistic: float,
    p_value: float | None,
    effect: float,
    threshold: float,
    baseline: npt.NDArray[np.generic],
    canary: npt.NDArray[np.generic],
    drifted: bool,
) -> ColumnDrift:
    return ColumnDrift(
        column=column,
        test=test,
        statistic=float(statistic),
        p_value=None if p_value is None else float(p_value),
        effect_size=float(effect),
        threshold=float(threshold),
        n_baseline=int(baseline.size),
        n_canary=int(canary.size),
        drifted=bool(drifted),
    )
