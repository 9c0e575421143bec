"""Bounded-memory summaries of a stream, enough for the gates' tests without keeping rows.

- `FixedBins`: bin edges fixed once (from the baseline's quantiles, or log-spaced for
  latencies) and integer counts per arm; PSI, a Mann-Whitney statistic with tie correction
  (values in one bin count as ties) and quantiles come from the counts. Memory: one int64 per
  bin per arm, however many requests.
- `Moments`: count, mean and sum of squared deviations (Chan's parallel update); mergeable.
- `Reservoir`: a uniform random sample of fixed size (Algorithm R), seeded, for tests that need
  raw values (KS, Hodges-Lehmann).
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
        counts = bin_counts(as_numeric(values, arm), self.edges)
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

    def add(self, values: npt.ArrayLike) -> None:
        batch = as_numeric(values, "values")
        if batch.size:
            mean = float(batch.mean())
            self.merge(Moments(int(batch.size), mean, float(((batch - mean) ** 2).sum())))

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
    """A uniform sample of at most `size` values of a stream (Algorithm R), seeded."""

    size: int
    seed: int = 0
    seen: int = 0
    _values: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size!r}")
        self._rng = np.random.default_rng(self.seed)

    def add(self, values: npt.ArrayLike) -> None:
        for value in as_numeric(values, "values").tolist():
            self.seen += 1
            if len(self._values) < self.size:
                self._values.append(value)
            else:
                slot = int(self._rng.integers(0, self.seen))
                if slot < self.size:
                    self._values[slot] = value

    @property
    def values(self) -> FloatArray:
        return np.asarray(self._values, dtype=np.float64)
