"""Bounded-memory summaries of a stream, enough for the gates' tests without keeping rows.

- `FixedBins`: bin edges fixed once (from the baseline's quantiles, or log-spaced for
  latencies) and integer counts per arm; PSI, a Mann-Whitney statistic with tie correction
  (values in one bin count as ties) and quantiles come from the counts. Memory: one int64 per
  bin per arm, however many requests.
- `Moments`: count, mean and sum of squared deviations (Chan's parallel update); mergeable.
- `Reservoir`: a uniform random sample of fixed size (Algorithm R), seeded, for tests that need
  raw values (KS, Hodges-Lehmann); it holds every value until it is full, so tests stay exact
  on small windows.
- `TwoArmStream`: one numeric quantity of both arms: moments, reservoirs and bin counts
  (given in advance, or frozen from the baseline on overflow).
- `CategoryCounts`: per-arm counts of category labels (capped number of labels), for chi-square.
- `mann_whitney_counts`: vectorised U / variance from bin counts; the decision benchmark uses
  it to judge thousands of simulated rollouts at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitors._bins import psi_edges
from monitors._validate import FloatArray, as_numeric
from monitors.names import ARMS
from monitors.twosample import bin_counts, psi_from_counts


def mann_whitney_counts(
    baseline_counts: npt.ArrayLike, canary_counts: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``(U / (n_b n_c) - 1/2, its tie-corrected null variance)`` from counts on shared bins.

    Bins are the last axis; any leading axes are independent samples. U counts canary values
    above baseline values, ties (the same bin) as 1/2.
    """
    b = np.asarray(baseline_counts, dtype=np.float64)
    c = np.asarray(canary_counts, dtype=np.float64)
    n_b, n_c = b.sum(axis=-1), c.sum(axis=-1)
    below = np.cumsum(b, axis=-1) - b  # baseline values in lower bins
    u = np.sum(c * (below + 0.5 * b), axis=-1)
    n = n_b + n_c
    ties = b + c
    tie_term = np.sum(ties**3 - ties, axis=-1) / np.maximum(n * (n - 1.0), 1.0)
    pairs = np.maximum(n_b * n_c, 1.0)
    theta = u / pairs - 0.5
    variance = (n + 1.0 - tie_term) / (12.0 * pairs)
    return np.asarray(theta), np.asarray(variance)


@dataclass
class FixedBins:
    """Counts of both arms on edges fixed in advance; bin i holds edges[i] < x <= edges[i+1]."""

    edges: FloatArray
    baseline_counts: npt.NDArray[np.int64] = field(init=False)
    canary_counts: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 1 or self.edges.size < 3 or np.any(np.diff(self.edges) <= 0):
            raise ValueError("edges must be >= 3 strictly increasing values (-inf .. +inf)")
        self.baseline_counts = np.zeros(self.edges.size - 1, dtype=np.int64)
        self.canary_counts = np.zeros(self.edges.size - 1, dtype=np.int64)

    @classmethod
    def from_baseline(cls, baseline: npt.ArrayLike, bins: int = 10) -> FixedBins:
        """Edges at the baseline's quantiles (the same edges PSI uses)."""
        return cls(psi_edges(baseline, bins))

    @classmethod
    def log_spaced(cls, low: float, high: float, bins: int = 200) -> FixedBins:
        """Edges spaced evenly in log between `low` and `high` (> 0), open at both ends."""
        if not 0.0 < low < high:
            raise ValueError(f"need 0 < low < high, got {low!r}, {high!r}")
        inner = np.geomspace(low, high, bins - 1)
        return cls(np.concatenate(([-np.inf], inner, [np.inf])))

    def add(self, arm: str, values: npt.ArrayLike) -> None:
        self.add_counts(arm, bin_counts(as_numeric(values, arm), self.edges))

    def add_counts(self, arm: str, counts: npt.NDArray[np.int64]) -> None:
        """Counts per bin of values binned on these edges elsewhere (``bin_counts``)."""
        if arm == "baseline":
            self.baseline_counts += counts
        elif arm == "canary":
            self.canary_counts += counts
        else:
            raise ValueError(f"arm must be 'baseline' or 'canary', got {arm!r}")

    def psi(self) -> float:
        return psi_from_counts(self.baseline_counts, self.canary_counts)

    def mann_whitney(self) -> tuple[float, float]:
        theta, variance = mann_whitney_counts(self.baseline_counts, self.canary_counts)
        return float(theta), float(variance)

    def quantile(self, arm: str, q: float) -> float:
        """The upper edge of the bin holding quantile `q` (finite edges only)."""
        counts = self.baseline_counts if arm == "baseline" else self.canary_counts
        total = int(counts.sum())
        if total == 0:
            return math.nan
        index = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
        finite = self.edges[np.isfinite(self.edges)]
        return float(finite[min(max(index, 0), finite.size - 1)])


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations of a numeric stream."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments:
        """The moments of a batch, computed directly (two-pass, like numpy)."""
        batch = as_numeric(values, "values")
        if not batch.size:
            return cls()
        mean = float(batch.mean())
        return cls(int(batch.size), mean, float(np.sum((batch - mean) ** 2)))

    def add(self, values: npt.ArrayLike) -> None:
        self.merge(Moments.of(values))

    def merge(self, other: Moments) -> None:
        total = self.count + other.count
        if other.count == 0:
            return
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); NaN with fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan


@dataclass
class Reservoir:
    """A uniform sample of at most `size` values of a stream (Algorithm R), seeded.

    While at most `size` values have been seen it holds every one of them, in arrival order
    (`complete`), so a test on `values` is exact; after that each value seen so far is in the
    sample with the same probability ``size / seen``.
    """

    size: int
    seed: int = 0
    seen: int = 0
    _buffer: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be an int >= 1, got {self.size!r}")
        self._rng = np.random.default_rng(self.seed)
        self._buffer = np.empty(0, dtype=np.float64)

    def add(self, values: npt.ArrayLike) -> None:
        batch = as_numeric(values, "values")
        free = max(0, min(self.size - self._buffer.size, batch.size))
        if free:
            self._buffer = np.concatenate((self._buffer, batch[:free]))
        rest = batch[free:]
        first = self.seen + free  # 0-based stream position of rest[0]
        self.seen += batch.size
        if rest.size:
            # Value at position i replaces slot j ~ U{0..i} when j < size; later values win.
            slots = self._rng.integers(0, first + 1 + np.arange(rest.size))
            keep = slots < self.size
            kept, values = slots[keep], rest[keep]
            # a slot drawn twice holds the later value: each slot's last draw
            last = kept.size - 1 - np.unique(kept[::-1], return_index=True)[1]
            self._buffer[kept[last]] = values[last]

    @property
    def complete(self) -> bool:
        """True while the sample still holds every value seen."""
        return self.seen <= self.size

    @property
    def values(self) -> FloatArray:
        return self._buffer.copy()


@dataclass
class TwoArmStream:
    """One numeric quantity of both arms (outputs, latencies) in bounded memory.

    Per arm: exact `Moments` and a `Reservoir` of `cap` values (exact while it is `complete`).
    Bin counts cover every value: `bins` given in advance (log-spaced for latencies), or, when
    None, frozen from the baseline the first time an arm would overflow its reservoir (edges
    at the baseline's quantiles, `psi_bins` of them; both reservoirs still hold every value
    then, so the counts are of all values). Memory: O(cap + bins) however long it runs.
    """

    cap: int = 20_000
    seed: int = 0
    bins: FixedBins | None = None
    psi_bins: int = 10
    moments: dict[str, Moments] = field(init=False)
    reservoirs: dict[str, Reservoir] = field(init=False)

    def __post_init__(self) -> None:
        self.moments = {arm: Moments() for arm in ARMS}
        self.reservoirs = {
            arm: Reservoir(self.cap, seed=self.seed + i) for i, arm in enumerate(ARMS)
        }

    def add(
        self, arm: str, values: npt.ArrayLike, counts: npt.NDArray[np.int64] | None = None
    ) -> None:
        """``values`` of one arm; ``counts``: the same values already counted on ``bins``'
        edges (``bin_counts``), when this stream was given its bins."""
        if arm not in ARMS:
            raise ValueError(f"arm must be 'baseline' or 'canary', got {arm!r}")
        batch = as_numeric(values, arm)
        if not batch.size:
            return
        if counts is not None and self.bins is not None:
            self.bins.add_counts(arm, counts)
            self.moments[arm].add(batch)
            self.reservoirs[arm].add(batch)
            return
        reservoir = self.reservoirs[arm]
        if self.bins is None and reservoir.seen + batch.size > self.cap:
            fits = self.cap - reservoir.seen  # first fill the reservoir, so bins see values
            if fits > 0:
                self.moments[arm].add(batch[:fits])
                reservoir.add(batch[:fits])
                batch = batch[fits:]
            self._freeze_bins()
        if self.bins is not None:
            self.bins.add(arm, batch)
        self.moments[arm].add(batch)
        reservoir.add(batch)

    def _freeze_bins(self) -> None:
        baseline = self.reservoirs["baseline"].values
        source = baseline if baseline.size else self.reservoirs["canary"].values
        self.bins = FixedBins(psi_edges(source, self.psi_bins))
        for arm in ARMS:
            self.bins.add(arm, self.reservoirs[arm].values)

    @property
    def exact(self) -> bool:
        """True while both reservoirs hold every value (tests on `values` are exact)."""
        return all(r.complete for r in self.reservoirs.values())

    def n(self, arm: str) -> int:
        return self.moments[arm].count

    def values(self, arm: str) -> FloatArray:
        """Every value of `arm` while `exact`, else a uniform sample of `cap` of them."""
        return self.reservoirs[arm].values


@dataclass
class CategoryCounts:
    """Counts of category labels per arm, for chi-square; at most `max_categories` labels.

    Labels beyond `max_categories` distinct ones are counted under `OTHER` (and `overflowed`
    says so), so memory stays bounded even for free-text outputs.
    """

    max_categories: int = 1000
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {a: {} for a in ARMS})
    overflowed: bool = False
    _distinct: int = field(default=0, init=False, repr=False)

    OTHER = "<other>"

    def add(self, arm: str, label: str, count: int = 1) -> None:
        if arm not in ARMS:
            raise ValueError(f"arm must be 'baseline' or 'canary', got {arm!r}")
        if label not in self.counts["baseline"] and label not in self.counts["canary"]:
            if self._distinct >= self.max_categories:
                self.overflowed = True
                label = self.OTHER
            else:
                self._distinct += 1
        table = self.counts[arm]
        table[label] = table.get(label, 0) + count

    def labels(self) -> list[str]:
        return list(dict.fromkeys([*self.counts["baseline"], *self.counts["canary"]]))

    def table(self) -> tuple[list[str], npt.NDArray[np.int64]]:
        """The categories and the 2 x k table (row 0 baseline, row 1 canary)."""
        labels = self.labels()
        rows = [[self.counts[arm].get(label, 0) for label in labels] for arm in ARMS]
        return labels, np.asarray(rows, dtype=np.int64).reshape(2, len(labels))

    def n(self, arm: str) -> int:
        return sum(self.counts[arm].values())
