"""Input drift: which features the serving traffic no longer draws like the reference does.

A :class:`FeatureReference` freezes a reference sample (a model's training data, or the first
window a release served) feature by feature: a numeric feature (numbers, more than
``MAX_CATEGORIES_NUMERIC`` distinct values) on bins cut at its quantiles (at most ``BINS``,
one per distinct value when there are fewer), a categorical one on its most frequent
``MAX_CATEGORIES`` values and one bin for the rest. :class:`FeatureCounts` counts served
feature rows on those bins, a row at a time (bounded: the first ``max_rows``, so the counts
are a prefix of the stream and their bounds stay valid at every look).

:func:`input_drift` asks, for every feature, whether its distance from the reference exceeds
``delta``: the KS distance of a numeric feature (:func:`monitors.quantiles.
ks_distance_bounds_binned`, with Massart's radius for the fixed reference and the
time-uniform DKW radius for the served rows), the total-variation
distance of a categorical one (:func:`monitors.quantiles.tv_distance_bounds`: every
category's anytime-valid rate bounds). Both bounds hold at every look at once, so each
feature's *anytime p-value* (the least alpha at which its lower bound clears ``delta``) is a
valid p-value at whatever look one stops. Across features:

- **drifted** features are the discoveries of the Benjamini-Yekutieli procedure at level
  ``alpha`` on those p-values: the expected share of wrongly flagged features among the flagged
  is at most ``alpha``, whatever the dependence between features (they are read off the same
  rows) and at any look. BY steps up over the levels ``alpha k / (m H_m)``: the largest ``k``
  whose level flags at least ``k`` features flags them;
- **within** features are those whose upper bound at ``alpha / m`` (Bonferroni: all at once)
  is below ``delta``.

The verdict compares the share of drifted features with ``max_share`` (Evidently's dataset
drift: at least half the columns drifted, by default) with its error controlled: **fail** when
the drifted share reaches it; **pass** when even the features not proven within stay below it;
else **inconclusive**.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitors._validate import check_alpha
from monitors.anytime import Bounds
from monitors.names import Verdict
from monitors.quantiles import dkw_radius, tv_distance_bounds

__all__ = [
    "BINS",
    "MAX_CATEGORIES",
    "FeatureCounts",
    "FeatureDistance",
    "FeatureReference",
    "InputDrift",
    "by_levels",
    "input_drift",
    "massart_radius",
]

BINS = 1_000  # quantile bins of a numeric feature's reference
MAX_CATEGORIES = 50  # categories of a categorical feature kept apart (the rest: one bin)
MAX_CATEGORIES_NUMERIC = 10  # a numeric column with at most this many values is categorical
MAX_FEATURES = 500
OTHER = "\x00other"  # the bin of categories the reference did not keep apart
MISSING = "\x00missing"
TV_DESIGN = 5_000.0  # rows the categorical rate bounds are tuned for (any value is valid)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _category(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass(frozen=True)
class _Feature:
    name: str
    kind: str  # "numeric" (KS on bins) or "categorical" (TV on categories)
    counts: npt.NDArray[np.int64]  # the reference's count per bin
    edges: npt.NDArray[np.float64] | None = None  # numeric: bin i holds x <= edges[i]
    categories: Mapping[str, int] = field(default_factory=dict)  # categorical: value -> bin

    def bins(self, values: Sequence[object]) -> npt.NDArray[np.int64]:
        """Counts of ``values`` on this feature's bins (numeric: non-numbers left out)."""
        if self.edges is not None:
            numbers = np.fromiter(
                (x for v in values if (x := _number(v)) is not None), dtype=np.float64
            )
            where = np.searchsorted(self.edges, numbers, side="left")
            return np.bincount(where, minlength=self.counts.size).astype(np.int64)
        other = self.categories.get(OTHER)
        found = Counter(self.categories.get(_category(v), other) for v in values)
        out = np.zeros(self.counts.size, dtype=np.int64)
        for index, count in found.items():
            if index is not None:
                out[index] += count
        return out


class FeatureReference:
    """A reference sample's features on frozen bins (see the module's docstring)."""

    def __init__(self, columns: Mapping[str, Sequence[object]]) -> None:
        if not columns:
            raise ValueError("columns: the reference has no features")
        if len(columns) > MAX_FEATURES:
            raise ValueError(f"columns: at most {MAX_FEATURES} features, got {len(columns)}")
        self.features: dict[str, _Feature] = {}
        self.n_rows = max(len(values) for values in columns.values())
        for name, values in columns.items():
            self.features[str(name)] = _freeze(str(name), list(values))

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]]) -> FeatureReference:
        names = list(dict.fromkeys(name for row in rows for name in row))
        return cls({name: [row.get(name) for row in rows] for name in names})


def _freeze(name: str, values: list[object]) -> _Feature:
    numbers = np.fromiter((x for v in values if (x := _number(v)) is not None), dtype=np.float64)
    distinct = np.unique(numbers)
    if numbers.size >= max(1, len(values) // 2) and distinct.size > MAX_CATEGORIES_NUMERIC:
        if distinct.size <= BINS:
            edges = distinct
        else:
            edges = np.unique(np.quantile(numbers, np.arange(1, BINS + 1) / BINS))
        edges = edges.astype(np.float64)
        edges[-1] = math.inf  # every larger serving value falls in the last bin
        feature = _Feature(name, "numeric", np.zeros(edges.size, dtype=np.int64), edges)
        return _Feature(name, "numeric", feature.bins(numbers.tolist()), edges)
    counted = Counter(_category(v) for v in values)
    kept = [value for value, _ in counted.most_common(MAX_CATEGORIES)]
    categories = {value: i for i, value in enumerate(kept)}
    categories[OTHER] = len(kept)
    feature = _Feature(
        name, "categorical", np.zeros(len(kept) + 1, dtype=np.int64), None, categories
    )
    return _Feature(name, "categorical", feature.bins(values), None, categories)


class FeatureCounts:
    """Served feature rows counted on a reference's bins: the first ``max_rows`` rows."""

    def __init__(self, reference: FeatureReference, max_rows: int = 20_000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows: must be at least 1, got {max_rows!r}")
        self.reference = reference
        self.max_rows = max_rows
        self.n_rows = 0
        self.counts = {
            name: np.zeros(f.counts.size, dtype=np.int64) for name, f in reference.features.items()
        }

    @property
    def full(self) -> bool:
        return self.n_rows >= self.max_rows

    def add(self, rows: Iterable[Mapping[str, object]]) -> None:
        """Count ``rows`` (feature name -> value; a feature a row lacks is left out of it)."""
        taken: list[Mapping[str, object]] = []
        for row in rows:
            if self.n_rows + len(taken) >= self.max_rows:
                break
            taken.append(row)
        if not taken:
            return
        self.n_rows += len(taken)
        for name, feature in self.reference.features.items():
            self.counts[name] += feature.bins([row[name] for row in taken if name in row])


@dataclass(frozen=True)
class FeatureDistance:
    """One feature's distance from the reference: the estimate, its bounds at ``alpha / m``,
    and whether it was flagged drifted (BY) or proven within ``delta``."""

    name: str
    kind: str
    n: int
    distance: float
    low: float
    high: float
    drifted: bool
    within: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "distance": self.distance,
            "low": self.low,
            "high": self.high,
            "drifted": self.drifted,
            "within": self.within,
        }


@dataclass(frozen=True)
class InputDrift:
    features: tuple[FeatureDistance, ...]
    verdict: Verdict
    delta: float
    max_share: float
    alpha: float
    n_reference: int
    n_rows: int

    @property
    def drifted(self) -> int:
        return sum(f.drifted for f in self.features)

    @property
    def not_within(self) -> int:
        return sum(not f.within for f in self.features)

    @property
    def share(self) -> float:
        return self.drifted / len(self.features) if self.features else math.nan

    def most_drifted(self, k: int = 3) -> list[FeatureDistance]:
        return sorted(self.features, key=lambda f: (-f.low, -f.distance))[:k]


def by_levels(alpha: float, m: int) -> list[float]:
    """The Benjamini-Yekutieli step-up levels ``alpha k / (m H_m)``, k = 1..m."""
    harmonic = sum(1.0 / i for i in range(1, m + 1))
    return [alpha * k / (m * harmonic) for k in range(1, m + 1)]


def massart_radius(n: int, alpha: float) -> float:
    """``sup_x |F_n(x) - F(x)|`` of one sample of a fixed size ``n`` stays below this with
    probability at least ``1 - alpha`` (Massart 1990: ``P(sup > e) <= 2 exp(-2 n e^2)``)."""
    if n <= 0:
        return 1.0
    return min(1.0, math.sqrt(math.log(2 / alpha) / (2 * n)))


def _ks_bounds(
    reference: npt.NDArray[np.int64], served: npt.NDArray[np.int64], alpha: float
) -> Bounds:
    """The KS distance of the served values from the reference's, on its bins, as
    :func:`monitors.quantiles.ks_distance_bounds_binned` has it (the distance at the edges,
    and the most it can reach inside a bin), except that the reference, a sample of a fixed
    size, takes Massart's radius at ``alpha / 2``; the served rows, which grow from look to
    look, take the time-uniform DKW radius at ``alpha / 2``."""
    n_r, n_s = int(reference.sum()), int(served.sum())
    if n_r <= 0 or n_s <= 0:
        return Bounds(math.nan, 0.0, 1.0)
    f_r = np.concatenate([[0.0], np.cumsum(reference) / n_r])
    f_s = np.concatenate([[0.0], np.cumsum(served) / n_s])
    at_edges = float(np.max(np.abs(f_s - f_r)))
    inside = float(np.max(np.maximum(f_s[1:] - f_r[:-1], f_r[1:] - f_s[:-1])))
    radius = massart_radius(n_r, alpha / 2) + dkw_radius(n_s, alpha / 2)
    return Bounds(at_edges, max(0.0, at_edges - radius), min(1.0, max(inside, at_edges) + radius))


def _bounds(
    feature: _Feature, served: npt.NDArray[np.int64], alpha: float
) -> tuple[float, float, float]:
    if feature.kind == "numeric":
        found = _ks_bounds(feature.counts, served, alpha)
    else:
        found = tv_distance_bounds(
            [int(v) for v in feature.counts], [int(v) for v in served], alpha, TV_DESIGN
        )
    return found.estimate, found.low, found.high


def input_drift(
    counts: FeatureCounts,
    *,
    alpha: float = 0.05,
    delta: float = 0.1,
    max_share: float = 0.5,
    min_n: int = 100,
) -> InputDrift:
    """Every feature's distance from the reference, the BY discoveries and the verdict (see
    the module's docstring); inconclusive, with nothing flagged, below ``min_n`` rows."""
    alpha = check_alpha(alpha)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta: must be in (0, 1), got {delta!r}")
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share: must be in (0, 1], got {max_share!r}")
    reference = counts.reference
    names = list(reference.features)
    m = len(names)
    enough = counts.n_rows >= min_n
    served = {name: counts.counts[name] for name in names}
    estimates: dict[str, tuple[float, float, float]] = {
        name: _bounds(reference.features[name], served[name], alpha / m) for name in names
    }
    drifted: set[str] = set()
    if enough:
        levels = by_levels(alpha, m)
        cache: dict[tuple[str, int], float] = {}

        def low(name: str, k: int) -> float:
            if (name, k) not in cache:
                cache[name, k] = _bounds(reference.features[name], served[name], levels[k - 1])[1]
            return cache[name, k]

        # only features already beyond delta at the loosest level can be flagged at any
        candidates = [name for name in names if low(name, m) > delta]
        for k in range(len(candidates), 0, -1):
            flagged = {name for name in candidates if low(name, k) > delta}
            if len(flagged) >= k:
                drifted = flagged
                break
    features = tuple(
        FeatureDistance(
            name=name,
            kind=reference.features[name].kind,
            n=int(served[name].sum()),
            distance=estimates[name][0],
            low=estimates[name][1],
            high=estimates[name][2],
            drifted=name in drifted,
            within=enough and estimates[name][2] < delta,
        )
        for name in names
    )
    result = InputDrift(features, "inconclusive", delta, max_share, alpha, reference.n_rows, 0)
    verdict: Verdict = "inconclusive"
    if enough and result.drifted >= max_share * m:
        verdict = "fail"
    elif enough and result.not_within < max_share * m:
        verdict = "pass"
    return InputDrift(features, verdict, delta, max_share, alpha, reference.n_rows, counts.n_rows)
