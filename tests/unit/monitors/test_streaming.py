"""Streaming summaries agree with the tests on the raw values they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors.streaming import FixedBins, Moments, Reservoir, mann_whitney_counts
from monitors.twosample import psi


def test_mann_whitney_from_counts_equals_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    baseline, canary = rng.integers(0, 12, 400), rng.integers(1, 13, 300)
    edges = np.concatenate(([-np.inf], np.arange(0, 13) + 0.5, [np.inf]))
    b_counts = np.bincount(np.searchsorted(edges[1:-1], baseline), minlength=14)
    c_counts = np.bincount(np.searchsorted(edges[1:-1], canary), minlength=14)
    theta, variance = mann_whitney_counts(b_counts, c_counts)
    res = stats.mannwhitneyu(canary, baseline, method="asymptotic", use_continuity=False)
    assert (float(theta) + 0.5) * 400 * 300 == pytest.approx(res.statistic)
    z = float(theta) / np.sqrt(float(variance))
    assert 2 * stats.norm.sf(abs(z)) == pytest.approx(res.pvalue, rel=1e-9)


def test_mann_whitney_counts_vectorises_over_runs() -> None:
    counts = np.array([[[5, 5, 0], [0, 5, 5]], [[3, 3, 3], [3, 3, 3]]])
    theta, _ = mann_whitney_counts(counts[:, 0], counts[:, 1])
    assert theta.shape == (2,)
    assert theta[1] == pytest.approx(0.0)
    assert theta[0] > 0


def test_fixed_bins_reuse_baseline_edges_for_psi_and_quantiles() -> None:
    rng = np.random.default_rng(2)
    baseline, canary = rng.normal(size=2000), rng.normal(0.5, size=1500)
    bins = FixedBins.from_baseline(baseline, bins=10)
    for chunk in np.array_split(baseline, 7):
        bins.add("baseline", chunk)
    for chunk in np.array_split(canary, 5):
        bins.add("canary", chunk)
    assert bins.psi() == pytest.approx(psi(baseline, canary, edges=bins.edges).statistic)
    assert int(bins.baseline_counts.sum()) == 2000
    assert bins.quantile("baseline", 0.5) == pytest.approx(np.quantile(baseline, 0.5), abs=1e-9)
    with pytest.raises(ValueError, match="arm"):
        bins.add("shadow", [1.0])


def test_log_spaced_bins_and_bad_edges() -> None:
    bins = FixedBins.log_spaced(1.0, 1000.0, bins=50)
    assert bins.edges.size == 51
    with pytest.raises(ValueError, match="edges"):
        FixedBins(np.array([0.0, 0.0, 1.0]))


def test_moments_merge_batches_exactly() -> None:
    rng = np.random.default_rng(3)
    values = rng.exponential(size=1001)
    moments = Moments()
    for chunk in np.array_split(values, 9):
        moments.add(chunk)
    assert moments.count == 1001
    assert moments.mean == pytest.approx(values.mean())
    assert moments.variance == pytest.approx(values.var(ddof=1))


def test_reservoir_is_bounded_seeded_and_a_subset() -> None:
    stream = np.arange(10_000, dtype=float)
    first, second = Reservoir(size=100, seed=4), Reservoir(size=100, seed=4)
    for chunk in np.array_split(stream, 10):
        first.add(chunk)
        second.add(chunk)
    assert first.values.size == 100 and first.seen == 10_000
    assert np.array_equal(first.values, second.values)
    assert set(first.values.tolist()) <= set(stream.tolist())
    assert 3000 < float(first.values.mean()) < 7000
