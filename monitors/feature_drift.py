"""Feature drift of canary against baseline that does not cry wolf: per-feature tests, false
alarms controlled across features, and how many features chance alone flags at these sizes.

:func:`compare_features` compares two frames (the same columns; one row per request) column by
column:

- a **numeric** column (numbers, more than ``MAX_CATEGORIES_NUMERIC`` distinct values) by the
  two-sample Kolmogorov-Smirnov test: its distance is the KS distance of the two arms, its
  p-value Smirnov's (``scipy.stats.ks_2samp(..., method="asymp")``); missing values left out;
- a **categorical** one (anything else) by Pearson's chi-square test of the 2 x k table of
  category counts (categories seen fewer than ``RARE`` times in both arms together share one
  cell; a missing value is a category): its distance is the total-variation distance of the
  two category mixes.

Across features the **Benjamini-Yekutieli** procedure at ``alpha`` flags features: the expected
share of wrongly flagged features among the flagged is at most ``alpha`` whatever the dependence
between features (they are read off the same rows). When no feature drifted at all, every flag
is wrong, so the chance of flagging any feature is at most ``alpha`` too. Each feature also
carries Evidently's own verdict, by its default per-column rule as
:func:`monitors.twosample.column_drift` reproduces it (KS, chi-square or z up to 1,000 baseline
rows, each at p < 0.05 with no correction; above, normed Wasserstein or Jensen-Shannon distance
at 0.1, which flags more and more columns of pure noise as the canary's rows get fewer).

**Flagged by chance at these sizes**: ``permutations`` times, the rows of both arms are pooled
and dealt again at random into arms of the same sizes (seeded by ``seed``), so that nothing can
have drifted, and both rules count the columns they flag; the result holds the median and 95th
percentile of each count. An arm of more than ``max_rows`` rows is first sampled down to
``max_rows`` (seeded), for the tests as for the permutations: the work is bounded.

The result is a frozen :class:`FeatureDriftTable`, most drifted feature first. Decisions are the
gates' (:mod:`monitors.features` judges inputs against a reference); this is for reading beside
a canary's drift report.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from monitors._categories import pearson_chi2
from monitors._validate import check_alpha
from monitors.features import MAX_CATEGORIES_NUMERIC, MAX_FEATURES, by_levels
from monitors.twosample import column_drift

__all__ = [
    "ChanceFlags",
    "FeatureDriftTable",
    "FeatureVerdict",
    "by_adjusted",
    "compare_features",
]

RARE = 5  # a category seen fewer times in both arms together shares a cell with the others
MAX_PERMUTATIONS = 10_000
MIN_ROWS = 10  # the least max_rows allowed


@dataclass(frozen=True)
class FeatureVerdict:
    """One feature: our test (its distance, p-value, BY-adjusted p-value and flag) and
    Evidently's default rule's (its method, score and flag; None when not run)."""

    name: str
    kind: str  # "numeric" (KS) or "categorical" (chi-square)
    test: str  # "ks" or "chi_square"
    distance: float  # KS distance, or total-variation distance of the category mixes
    p_value: float
    q_value: float  # Benjamini-Yekutieli adjusted p-value: flagged when at most alpha
    flagged: bool
    evidently_test: str | None = None
    evidently_score: float | None = None
    evidently_flagged: bool | None = None

    @property
    def differs(self) -> bool:
        """Whether Evidently's rule and ours disagree on this feature."""
        return self.evidently_flagged is not None and self.evidently_flagged != self.flagged

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ChanceFlags:
    """Columns flagged when nothing drifted (the arms' rows dealt again ``rounds`` times)."""

    rounds: int
    ours_median: float
    ours_p95: float
    ours_any_share: float  # share of rounds in which ours flagged at least one column
    evidently_median: float
    evidently_p95: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureDriftTable:
    """Every feature's verdict, most drifted first; the rows compared (after sampling down to
    ``max_rows``) and given; the chance counts (None without permutations)."""

    features: tuple[FeatureVerdict, ...]
    alpha: float
    n_baseline: int
    n_canary: int
    rows_baseline: int
    rows_canary: int
    chance: ChanceFlags | None

    @property
    def flagged(self) -> int:
        return sum(f.flagged for f in self.features)

    @property
    def evidently_flagged(self) -> int:
        return sum(bool(f.evidently_flagged) for f in self.features)

    def to_dict(self) -> dict[str, object]:
        counts = {"flagged": self.flagged, "evidently_flagged": self.evidently_flagged}
        return {**asdict(self), **counts}


def by_adjusted(p_values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini-Yekutieli adjusted p-values: a feature is flagged at level ``alpha`` when its
    adjusted p-value is at most ``alpha`` (the step-up over :func:`monitors.features.by_levels`)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] / np.asarray(by_levels(1.0, m))
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m, dtype=np.float64)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class _Column:
    """One column, both arms pooled (baseline rows first), ready to be dealt again."""

    name: str
    kind: str
    values: npt.NDArray[np.generic]  # numeric: floats with NaN; categorical: category codes
    evidently: npt.NDArray[np.generic]  # what Evidently's rule reads (missing values left out)
    evidently_categorical: bool

    def ours(
        self, baseline: npt.NDArray[np.intp], canary: npt.NDArray[np.intp], above: float = 1.0
    ) -> tuple[float, float]:
        """(distance, p-value) of the rows at ``baseline`` against those at ``canary``; a
        KS p-value known to exceed ``above`` is given as 1 (it cannot be flagged anyway)."""
        if self.kind == "numeric":
            return _ks(self.values[baseline], self.values[canary], above)
        return _chi_square(self.values[baseline], self.values[canary])

    def evidently_rule(
        self, baseline: npt.NDArray[np.intp], canary: npt.NDArray[np.intp]
    ) -> tuple[str, float, bool] | None:
        b, c = self.evidently[baseline], self.evidently[canary]
        if self.evidently.dtype.kind == "f":
            b, c = b[~np.isnan(b)], c[~np.isnan(c)]
        if b.size == 0 or c.size == 0:
            return None
        found = column_drift(b, c, categorical=self.evidently_categorical)
        return found.test, found.statistic, found.drifted


def _ks(
    baseline: npt.NDArray[np.generic], canary: npt.NDArray[np.generic], above: float = 1.0
) -> tuple[float, float]:
    b = np.sort(baseline[~np.isnan(baseline)])
    c = np.sort(canary[~np.isnan(canary)])
    if b.size == 0 or c.size == 0:
        return 0.0, 1.0
    both = np.concatenate([b, c])
    gaps = np.searchsorted(b, both, side="right") / b.size
    gaps -= np.searchsorted(c, both, side="right") / c.size
    distance = float(np.max(np.abs(gaps)))
    from scipy.stats import kstwo

    n, m = sorted((float(b.size), float(c.size)), reverse=True)
    size = round(n * m / (n + m))
    if above < 1.0 and distance < _ks_critical(size, above):
        return distance, 1.0
    return distance, float(np.clip(kstwo.sf(distance, size), 0.0, 1.0))


@functools.cache
def _ks_critical(size: int, level: float) -> float:
    """The KS distance below which Smirnov's p-value at ``size`` exceeds ``level``."""
    from scipy.stats import kstwo

    return float(kstwo.isf(level, size))


def _chi_square(
    baseline: npt.NDArray[np.generic], canary: npt.NDArray[np.generic]
) -> tuple[float, float]:
    k = int(max(baseline.max(initial=0), canary.max(initial=0))) + 1
    table = np.stack([np.bincount(baseline, minlength=k), np.bincount(canary, minlength=k)])
    table = table[:, table.sum(axis=0) > 0].astype(np.int64)
    if table.shape[1] < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return 0.0, 1.0
    shares = table / table.sum(axis=1, keepdims=True)
    distance = float(np.abs(shares[0] - shares[1]).sum() / 2)
    return distance, pearson_chi2(table)[1]


def _numbers(values: pd.Series) -> npt.NDArray[np.float64] | None:
    """The column as floats (NaN where missing) when every value present is a real number."""
    if values.dtype.kind in "iuf":
        floats: npt.NDArray[np.float64] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return floats
    present = values.dropna()
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_) for v in present):
        return None
    return np.asarray([np.nan if _missing(v) else float(v) for v in values], dtype=np.float64)


def _missing(value: object) -> bool:
    """None, NaN, pandas' NA or NaT (a list or a mapping is a value like any other)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _codes(labels: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
    """Category codes, the categories seen fewer than ``RARE`` times sharing the last one."""
    _, found, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes: npt.NDArray[np.intp] = found.astype(np.intp)
    rare = counts < RARE
    if rare.sum() < 2:
        return codes
    remap = np.where(rare, int((~rare).sum()), np.cumsum(~rare) - 1)
    lumped: npt.NDArray[np.intp] = remap[codes].astype(np.intp)
    return lumped


def _column(name: str, pooled: pd.Series) -> _Column:
    floats = _numbers(pooled)
    if floats is not None:
        distinct = np.unique(floats[~np.isnan(floats)]).size
        if distinct > MAX_CATEGORIES_NUMERIC:
            return _Column(name, "numeric", floats, floats, False)
        labels = np.asarray(["\x00missing" if math.isnan(x) else repr(x) for x in floats])
        return _Column(name, "categorical", _codes(labels), floats, False)
    labels = np.asarray(["\x00missing" if _missing(v) else str(v) for v in pooled], dtype=str)
    _, everything = np.unique(labels, return_inverse=True)
    present = np.asarray([not _missing(v) for v in pooled])
    codes = np.where(present, everything, -1).astype(np.float64)
    codes[~present] = np.nan
    return _Column(name, "categorical", _codes(labels), codes, True)


def _check(baseline: pd.DataFrame, canary: pd.DataFrame, permutations: int, max_rows: int) -> None:
    differ = sorted(map(str, set(baseline.columns) ^ set(canary.columns)))
    if differ:
        raise ValueError(f"baseline and canary must have the same columns; differ in {differ}")
    if not len(baseline.columns):
        raise ValueError("baseline and canary have no columns to compare")
    if len(baseline.columns) > MAX_FEATURES:
        raise ValueError(f"columns: at most {MAX_FEATURES}, got {len(baseline.columns)}")
    if len(baseline) == 0 or len(canary) == 0:
        raise ValueError(f"both frames need rows (baseline {len(baseline)}, canary {len(canary)})")
    for name, value, low, high in (
        ("permutations", permutations, 0, MAX_PERMUTATIONS),
        ("max_rows", max_rows, MIN_ROWS, None),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name}: must be an int of at least {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{name}: must be at most {high}, got {value!r}")


def compare_features(
    baseline: pd.DataFrame,
    canary: pd.DataFrame,
    *,
    alpha: float = 0.05,
    permutations: int = 50,
    seed: int = 0,
    max_rows: int = 5000,
) -> FeatureDriftTable:
    """Every column of ``canary`` against ``baseline`` (see the module's docstring)."""
    alpha = check_alpha(alpha)
    _check(baseline, canary, permutations, max_rows)
    rng = np.random.default_rng(seed)
    names = [str(name) for name in baseline.columns]
    arms = [
        frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
        if len(frame) > max_rows
        else frame
        for frame in (baseline, canary[baseline.columns])
    ]
    n_baseline, n_canary = len(arms[0]), len(arms[1])
    pooled = pd.concat(arms, ignore_index=True)
    columns = [_column(name, pooled.iloc[:, i]) for i, name in enumerate(names)]
    at_baseline = np.arange(n_baseline, dtype=np.intp)
    at_canary = np.arange(n_baseline, n_baseline + n_canary, dtype=np.intp)
    ours = [column.ours(at_baseline, at_canary) for column in columns]
    q = by_adjusted([p for _, p in ours])
    verdicts = []
    for column, (distance, p), q_value in zip(columns, ours, q, strict=True):
        theirs = column.evidently_rule(at_baseline, at_canary)
        verdicts.append(
            FeatureVerdict(
                name=column.name,
                kind=column.kind,
                test="ks" if column.kind == "numeric" else "chi_square",
                distance=distance,
                p_value=p,
                q_value=float(q_value),
                flagged=bool(q_value <= alpha),
                evidently_test=None if theirs is None else theirs[0],
                evidently_score=None if theirs is None else theirs[1],
                evidently_flagged=None if theirs is None else theirs[2],
            )
        )
    verdicts.sort(key=lambda f: (f.p_value, -f.distance, f.name))
    chance = _chance(columns, n_baseline, n_canary, alpha, permutations, rng)
    return FeatureDriftTable(
        tuple(verdicts), alpha, n_baseline, n_canary, len(baseline), len(canary), chance
    )


def _chance(
    columns: list[_Column],
    n_baseline: int,
    n_canary: int,
    alpha: float,
    rounds: int,
    rng: np.random.Generator,
) -> ChanceFlags | None:
    """Both rules' counts of flagged columns over ``rounds`` random deals of the pooled rows."""
    if rounds == 0:
        return None
    ours, theirs = np.zeros(rounds), np.zeros(rounds)
    # BY flags no p-value above its loosest level, alpha / H_m: those need not be exact
    harmonic = sum(1.0 / k for k in range(1, len(columns) + 1))
    for i in range(rounds):
        dealt = rng.permutation(n_baseline + n_canary).astype(np.intp)
        b, c = dealt[:n_baseline], dealt[n_baseline:]
        p_values = [column.ours(b, c, alpha / harmonic)[1] for column in columns]
        ours[i] = np.sum(by_adjusted(p_values) <= alpha)
        found = [column.evidently_rule(b, c) for column in columns]
        theirs[i] = sum(bool(f and f[2]) for f in found)
    return ChanceFlags(
        rounds=rounds,
        ours_median=float(np.median(ours)),
        ours_p95=float(np.quantile(ours, 0.95)),
        ours_any_share=float(np.mean(ours > 0)),
        evidently_median=float(np.median(theirs)),
        evidently_p95=float(np.quantile(theirs, 0.95)),
    )
