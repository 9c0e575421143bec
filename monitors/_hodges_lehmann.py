"""Hodges-Lehmann shift between two samples, with its distribution-free confidence interval.

The shift is the median of all pairwise differences ``canary[i] - baseline[j]``. The interval
takes the k-th smallest and k-th largest difference, with k from the normal approximation to
the Mann-Whitney null distribution (ties ignored), so its lower bound is > 0 about when a
one-sided Mann-Whitney test at the same level says the canary is greater.

When ``n_baseline * n_canary`` exceeds `max_pairs`, each arm is replaced by evenly spaced
order statistics (a deterministic, distribution-preserving thinning) so at most `max_pairs`
differences are formed; the interval keeps the rank fraction of the full-size interval.
Both arms must be non-empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitors import _normal as normal
from monitors._validate import FloatArray

MAX_PAIRS = 4_000_000


@dataclass(frozen=True)
class Shift:
    """Hodges-Lehmann estimate of ``canary - baseline`` and its two-sided interval."""

    estimate: float
    ci_low: float  # -inf when the samples are too small for the requested level
    ci_high: float  # +inf likewise
    subsampled: bool


def hodges_lehmann(
    baseline: FloatArray, canary: FloatArray, *, ci_level: float, max_pairs: int = MAX_PAIRS
) -> Shift:
    """Return the HL shift of `canary` over `baseline` and its `ci_level` interval."""
    n_baseline, n_canary = baseline.size, canary.size
    total_pairs = n_baseline * n_canary
    baseline_kept, canary_kept = _thin(np.sort(baseline), np.sort(canary), max_pairs)
    diffs = np.subtract.outer(canary_kept, baseline_kept).ravel()
    n_diffs = diffs.size

    z = float(normal.isf((1.0 - ci_level) / 2.0))
    spread = math.sqrt(n_baseline * n_canary * (n_baseline + n_canary + 1) / 12.0)
    k_full = math.floor(total_pairs / 2.0 - z * spread)  # 1-based rank of the lower bound
    if n_diffs == total_pairs:
        k = k_full
    else:
        k = max(1, round(k_full * n_diffs / total_pairs)) if k_full >= 1 else 0

    middle = sorted({(n_diffs - 1) // 2, n_diffs // 2})
    bounds = [k - 1, n_diffs - k] if k >= 1 else []
    ordered = np.partition(diffs, sorted({*middle, *bounds}))
    estimate = float(np.mean(ordered[middle]))
    ci_low, ci_high = (
        (float(ordered[bounds[0]]), float(ordered[bounds[1]])) if bounds else (-math.inf, math.inf)
    )
    return Shift(
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        subsampled=n_diffs < total_pairs,
    )


def _thin(
    baseline_sorted: FloatArray, canary_sorted: FloatArray, max_pairs: int
) -> tuple[FloatArray, FloatArray]:
    n_baseline, n_canary = baseline_sorted.size, canary_sorted.size
    if n_baseline * n_canary <= max_pairs:
        return baseline_sorted, canary_sorted
    side = math.isqrt(max_pairs)
    smaller = min(n_baseline, n_canary)
    if smaller <= side:
        keep_baseline = n_baseline if n_baseline == smaller else max_pairs // smaller
        keep_canary = n_canary if n_canary == smaller else max_pairs // smaller
    else:
        keep_baseline = keep_canary = side
    return _order_statistics(baseline_sorted, keep_baseline), _order_statistics(
        canary_sorted, keep_canary
    )


def _order_statistics(sorted_values: FloatArray, keep: int) -> FloatArray:
    """Pick `keep` order statistics at the midpoints of `keep` equal-probability strata."""
    if keep >= sorted_values.size:
        return sorted_values
    positions = ((np.arange(keep) + 0.5) * (sorted_values.size / keep)).astype(np.int64)
    return sorted_values[positions]
