"""The gates on streaming summaries agree with the same gates (or scipy) on the raw values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors import accuracy_test, latency_test, loss_test, mean_shift_test, psi, psi_edges
from monitors.drift import chi_square_table, chi_square_test, mean_shift_moments, psi_counts
from monitors.quality import accuracy_counts_test, loss_moments_test
from monitors.streaming import CategoryCounts, FixedBins, Moments, Reservoir, TwoArmStream


def test_a_reservoir_keeps_everything_until_full_then_a_uniform_sample() -> None:
    reservoir = Reservoir(size=1000, seed=1)
    reservoir.add(np.arange(600.0))
    assert reservoir.complete and np.array_equal(reservoir.values, np.arange(600.0))
    reservoir.add(np.arange(600.0, 100_000.0))
    assert not reservoir.complete and reservoir.seen == 100_000
    assert reservoir.values.size == 1000 and np.unique(reservoir.values).size == 1000
    # Uniform over the stream: each decile holds about a tenth of the sample.
    deciles = np.bincount((reservoir.values // 10_000).astype(int), minlength=10)
    assert stats.chisquare(deciles).pvalue > 0.001


def test_a_reservoir_is_uniform_across_seeds() -> None:
    hits = np.zeros(10)
    for seed in range(200):
        reservoir = Reservoir(size=5, seed=seed)
        for chunk in np.array_split(np.arange(10.0), 3):
            reservoir.add(chunk)
        hits[reservoir.values.astype(int)] += 1
    # Each of 10 values is kept with probability 1/2: 100 of 200 runs, give or take.
    assert stats.chisquare(hits).pvalue > 0.001 and hits.sum() == 1000


def test_a_two_arm_stream_freezes_psi_bins_from_the_baseline_on_overflow() -> None:
    rng = np.random.default_rng(2)
    baseline, canary = rng.normal(0, 1, 5000), rng.normal(0.3, 1, 3000)
    stream = TwoArmStream(cap=2000)
    stream.add("baseline", baseline[:1500])
    stream.add("canary", canary[:1000])
    assert stream.exact and stream.bins is None
    stream.add("baseline", baseline[1500:])
    stream.add("canary", canary[1000:])
    assert not stream.exact and stream.bins is not None
    edges = stream.bins.edges  # from the first 2000 (the reservoir filled), then fixed
    assert np.array_equal(edges, psi_edges(baseline[:2000]))
    raw = psi(baseline, canary, edges=edges)
    binned = psi_counts(stream.bins.baseline_counts, stream.bins.canary_counts)
    assert binned.statistic == pytest.approx(raw.statistic, rel=1e-12)
    assert (binned.n_baseline, binned.n_canary) == (5000, 3000)
    assert stream.n("baseline") == 5000 and stream.values("baseline").size == 2000
    assert stream.moments["canary"].mean == pytest.approx(canary.mean(), rel=1e-12)


def test_binned_latency_equals_scipy_on_the_binned_values() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.lognormal(2.0, 0.4, 30_000)
    canary = rng.lognormal(2.0, 0.4, 3_000) * 1.05
    bins = FixedBins.log_spaced(1e-3, 1e6, 1200)
    bins.add("baseline", baseline)
    bins.add("canary", canary)
    result = latency_test(baseline[:2000], canary[:2000], binned=bins, max_ratio=1.0)
    index_b = np.searchsorted(bins.edges[1:-1], baseline)
    index_c = np.searchsorted(bins.edges[1:-1], canary)
    ref = stats.mannwhitneyu(
        index_c, index_b, alternative="greater", method="asymptotic", use_continuity=False
    )
    assert result.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (result.n_baseline, result.n_canary) == (30_000, 3_000)
    assert result.verdict == "fail"  # 5% slower, and the raw test agrees
    raw = latency_test(baseline, canary, max_ratio=1.0)
    assert raw.verdict == "fail" and raw.p_value == pytest.approx(result.p_value, rel=0.5)


def test_moment_and_count_gates_equal_the_raw_gates() -> None:
    rng = np.random.default_rng(4)
    b, c = rng.normal(1.0, 2.0, 700), rng.normal(1.3, 2.0, 400)
    raw = mean_shift_test(b, c)
    from_moments = mean_shift_moments(Moments.of(b), Moments.of(c))
    assert from_moments.p_value == pytest.approx(raw.p_value, rel=1e-9)
    assert from_moments.effect_size == pytest.approx(raw.effect_size, rel=1e-9)
    running = Moments()
    for chunk in np.array_split(b, 7):
        running.add(chunk)
    assert running.variance == pytest.approx(float(np.var(b, ddof=1)), rel=1e-12)

    losses_b, losses_c = np.abs(b), np.abs(c)
    for metric in ("mae", "rmse", "log_loss"):
        expected = loss_test(losses_b, losses_c, metric=metric, sequential=True)
        got = loss_moments_test(
            Moments.of(losses_b), Moments.of(losses_c), metric=metric, sequential=True
        )
        assert got.p_value == pytest.approx(expected.p_value, rel=1e-9)
        assert got.statistic == pytest.approx(expected.statistic, rel=1e-9)

    correct_b, correct_c = rng.random(900) < 0.9, rng.random(500) < 0.85
    expected = accuracy_test(correct_b, correct_c, sequential=True)
    got = accuracy_counts_test(
        int(correct_b.sum()), 900, int(correct_c.sum()), 500, sequential=True
    )
    assert (got.p_value, got.verdict) == (expected.p_value, expected.verdict)
    with pytest.raises(ValueError, match="cannot exceed"):
        accuracy_counts_test(10, 5, 1, 5)


def test_category_counts_give_the_raw_chi_square_and_stay_bounded() -> None:
    rng = np.random.default_rng(5)
    b = rng.choice(["a", "b", "c"], 600, p=[0.5, 0.3, 0.2])
    c = rng.choice(["a", "b", "c", "d"], 300, p=[0.4, 0.3, 0.2, 0.1])
    counts = CategoryCounts()
    for arm, values in (("baseline", b), ("canary", c)):
        for value in values.tolist():
            counts.add(arm, value)
    labels, table = counts.table()
    expected = chi_square_test(b, c)
    got = chi_square_table(labels, table)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(expected.p_value, rel=1e-12)
    assert (got.n_baseline, got.n_canary) == (600, 300)

    capped = CategoryCounts(max_categories=5)
    for i in range(50):
        capped.add("baseline", f"free text {i}")
    assert capped.overflowed and len(capped.labels()) == 6
    assert capped.counts["baseline"][CategoryCounts.OTHER] == 45 and capped.n("baseline") == 50
