"""Simulated canary rollouts with a known truth, judged look by look, vectorised across runs.

Each run serves `batch` canary and `batch` baseline requests per look, up to `looks` looks, and
keeps only streaming summaries per arm (the same ones the monitors can work from): error and
correct counts, output moments, and latency counts on fixed log-spaced bins. At every look the
four gates are judged from those summaries with the `monitors.sequential` always-valid p-values
(error rate and accuracy: two-proportion mSPRT on the z statistic; latency: mSPRT on the
standardised Mann-Whitney U from bin counts, plus the p95 ratio; output drift: the two-sided
mean-shift mSPRT), Holm-corrected across the four, and the run is rolled back at the first look
with a failing gate. The *naive* judge uses the same data with fixed-horizon p-values (z tests,
Mann-Whitney normal approximation) at every look, as Kayenta does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from monitors.sequential import always_valid_p
from monitors.streaming import mann_whitney_counts

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Truth:
    """What each arm really does."""

    baseline_error: float = 0.01
    canary_error: float = 0.01
    baseline_accuracy: float = 0.90
    canary_accuracy: float = 0.90
    output_shift_sd: float = 0.0  # canary output mean shift, in output sds
    latency_scale: float = 1.0  # canary latencies = baseline's x this (p95 moves the same)


@dataclass(frozen=True)
class Gates:
    """Gate settings of the simulated spec (the same meaning as in the rollout spec)."""

    alpha: float = 0.05
    error_tau: float = 0.01
    accuracy_tau: float = 0.03
    latency_tau: float = 0.1
    drift_tau: float = 0.2
    max_ratio: float = 1.0  # p95 ratio must exceed this to fail (1.0: strictest for A/A)
    min_n: int = 100


LATENCY_MEDIAN_MS, LATENCY_SIGMA = 50.0, 0.5
LATENCY_EDGES = np.concatenate(([-np.inf], np.geomspace(5.0, 1000.0, 255), [np.inf]))


def simulate(
    truth: Truth, gates: Gates, *, runs: int, looks: int, batch: int, seed: int
) -> dict[str, FloatArray]:
    """Per run: the look of the first rollback (or -1), sequential and naive judges."""
    rng = np.random.default_rng(seed)
    shape = (runs, looks)
    n = batch * np.arange(1, looks + 1, dtype=np.float64)[None, :] * np.ones((runs, 1))

    p_seq, p_fix = {}, {}
    # error rate: bad = error
    b_err = np.cumsum(rng.binomial(batch, truth.baseline_error, shape), axis=1).astype(float)
    c_err = np.cumsum(rng.binomial(batch, truth.canary_error, shape), axis=1).astype(float)
    p_seq["error_rate"], p_fix["error_rate"] = _proportions(b_err, c_err, n, gates.error_tau)
    # accuracy (every request labelled): bad = wrong
    b_wrong = np.cumsum(rng.binomial(batch, 1.0 - truth.baseline_accuracy, shape), 1).astype(float)
    c_wrong = np.cumsum(rng.binomial(batch, 1.0 - truth.canary_accuracy, shape), 1).astype(float)
    p_seq["quality"], p_fix["quality"] = _proportions(b_wrong, c_wrong, n, gates.accuracy_tau)
    # output drift: N(0, 1) baseline, N(shift, 1) canary, exact batch means and sums of squares
    p_seq["output_drift"], p_fix["output_drift"] = _mean_shift(
        rng, truth.output_shift_sd, shape, batch, n, gates.drift_tau
    )
    p_seq["latency"], p_fix["latency"], ratio_ok = _latency(
        rng, truth.latency_scale, runs, looks, batch, gates
    )

    enough = n >= gates.min_n
    extra = {"latency": ratio_ok}
    return {
        "sequential": _first_rollback(p_seq, extra, enough, gates.alpha),
        "naive": _first_rollback(p_fix, extra, enough, gates.alpha),
    }


def _proportions(
    b_bad: FloatArray, c_bad: FloatArray, n: FloatArray, tau: float
) -> tuple[FloatArray, FloatArray]:
    pooled = (b_bad + c_bad) / (2.0 * n)
    variance = pooled * (1.0 - pooled) * (2.0 / n)  # pooled SE (margin 0), as the gate does
    diff = (c_bad - b_bad) / n
    z = np.where(variance > 0, diff / np.sqrt(np.maximum(variance, 1e-300)), 0.0)
    return always_valid_p(diff, variance, tau), stats.norm.sf(z)


def _mean_shift(
    rng: np.random.Generator,
    shift: float,
    shape: tuple[int, int],
    batch: int,
    n: FloatArray,
    tau: float,
) -> tuple[FloatArray, FloatArray]:
    moments = []
    for mean in (0.0, shift):
        sums = np.cumsum(rng.normal(batch * mean, np.sqrt(batch), shape), axis=1)
        within = rng.chisquare(batch - 1, shape)  # batch sum of squared deviations
        batch_means = np.diff(sums, axis=1, prepend=0.0) / batch
        # total SS = sum within + sum batch * (batch mean - overall mean)^2
        overall = sums / n
        ss_between = np.cumsum(batch * batch_means**2, axis=1) - n * overall**2
        variance = (np.cumsum(within, axis=1) + ss_between) / (n - 1.0)
        moments.append((overall, variance))
    (b_mean, b_var), (c_mean, c_var) = moments
    sd = np.sqrt(np.maximum(b_var, 1e-12))
    effect = (c_mean - b_mean) / sd
    variance = (b_var / n + c_var / n) / sd**2
    z = effect / np.sqrt(variance)
    return always_valid_p(effect, variance, tau, one_sided=False), 2.0 * stats.norm.sf(np.abs(z))


def _latency(
    rng: np.random.Generator, scale: float, runs: int, looks: int, batch: int, gates: Gates
) -> tuple[FloatArray, FloatArray, BoolArray]:
    def probabilities(median: float) -> FloatArray:
        cdf = stats.lognorm.cdf(LATENCY_EDGES, LATENCY_SIGMA, scale=median)
        return np.asarray(np.diff(np.nan_to_num(cdf, nan=0.0, posinf=1.0)))

    p_b, p_c = probabilities(LATENCY_MEDIAN_MS), probabilities(LATENCY_MEDIAN_MS * scale)
    p_b, p_c = p_b / p_b.sum(), p_c / p_c.sum()
    b_counts = np.zeros((runs, p_b.size))
    c_counts = np.zeros((runs, p_c.size))
    p_seq = np.empty((runs, looks))
    p_fix = np.empty((runs, looks))
    ratio_ok = np.empty((runs, looks), dtype=bool)
    upper = LATENCY_EDGES[1:].copy()
    upper[-1] = LATENCY_EDGES[-2]
    for look in range(looks):
        b_counts += rng.multinomial(batch, p_b, size=runs)
        c_counts += rng.multinomial(batch, p_c, size=runs)
        theta, variance = mann_whitney_counts(b_counts, c_counts)
        p_seq[:, look] = always_valid_p(theta, variance, gates.latency_tau)
        p_fix[:, look] = stats.norm.sf(theta / np.sqrt(variance))
        ratio_ok[:, look] = _p95(c_counts, upper) > gates.max_ratio * _p95(b_counts, upper)
    return p_seq, p_fix, ratio_ok


def _p95(counts: FloatArray, upper: FloatArray) -> FloatArray:
    cumulative = np.cumsum(counts, axis=1)
    index = np.argmax(cumulative >= 0.95 * cumulative[:, -1:], axis=1)
    return np.asarray(upper[index])


def _first_rollback(
    p_values: dict[str, FloatArray], extra: dict[str, BoolArray], enough: BoolArray, alpha: float
) -> FloatArray:
    """Index of the first look where a gate fails at its Holm level (-1: never)."""
    names = list(p_values)
    stacked = np.stack([p_values[name] for name in names], axis=-1)  # runs x looks x gates
    k = len(names)
    order = np.argsort(stacked, axis=-1)
    sorted_p = np.take_along_axis(stacked, order, axis=-1)
    below = sorted_p < alpha / (k - np.arange(k))
    holm_sorted = np.cumprod(below, axis=-1).astype(bool)
    rejected = np.zeros_like(holm_sorted)
    np.put_along_axis(rejected, order, holm_sorted, axis=-1)
    for index, name in enumerate(names):
        if name in extra:
            rejected[..., index] &= extra[name]
    fails = rejected.any(axis=-1) & enough
    first = np.where(fails.any(axis=1), np.argmax(fails, axis=1), -1)
    return first.astype(np.float64)
