"""Statistics and drift of the rollout page's per-arm sample (:mod:`rollout.store.page_samples`).

From the sample the page draws the outputs' distributions, error rate and latency quantiles per
arm with intervals (:func:`arm_stats`), and the most drifted features (:func:`feature_drift`:
:func:`monitors.feature_drift.compare_features`, a KS or chi-square test per feature with
Benjamini-Yekutieli across features, and how many columns each rule would flag by chance at
these sizes, the same table the drift report opens with).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from monitors.feature_drift import FeatureDriftTable, compare_features
from rollout.store.page_samples import PageSample
from rollout.summary import is_number

QUANTILES = (0.5, 0.9, 0.99)
PERMUTATIONS = 20  # deals of the rows for the chance counts


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class ArmStats:
    arm: str
    n: int
    error_rate: Interval
    latency_ms: dict[float, Interval]  # quantile → estimate and 95% interval


def wilson(successes: int, n: int) -> Interval:
    """A proportion with its 95% Wilson interval (scipy's; 0 of 0: an interval of [0, 1])."""
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high))


def quantile_interval(values: list[float], q: float) -> Interval:
    """The ``q`` quantile with a distribution-free 95% interval from order statistics."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    estimate = float(np.quantile(ordered, q))
    low_rank = int(stats.binom.ppf(0.025, n, q))
    high_rank = int(stats.binom.ppf(0.975, n, q))
    low = float(ordered[max(0, low_rank - 1)])
    high = float(ordered[min(n - 1, high_rank)])
    return Interval(estimate, min(low, estimate), max(high, estimate))


def arm_stats(taken: PageSample) -> ArmStats:
    latency = {q: quantile_interval(taken.latencies_ms, q) for q in QUANTILES} if taken.n else {}
    return ArmStats(taken.arm, taken.n, wilson(taken.errors, taken.n), latency)


def feature_drift(
    baseline: list[dict[str, object]], canary: list[dict[str, object]]
) -> FeatureDriftTable | None:
    """Every feature of the two arms' sampled rows, most drifted first, false alarms controlled
    across features (``PERMUTATIONS`` deals for the chance counts); None without rows."""
    if len(baseline) < 2 or len(canary) < 2:
        return None
    return compare_features(
        pd.DataFrame(baseline), pd.DataFrame(canary), permutations=PERMUTATIONS, seed=0
    )


def numeric(rows: list[dict[str, object]], name: str) -> list[float]:
    return [float(row[name]) for row in rows if is_number(row.get(name))]  # type: ignore[arg-type]
