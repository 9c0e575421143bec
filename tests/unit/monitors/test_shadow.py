"""Paired shadow tests against scipy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors.anytime import bernoulli_bounds
from monitors.shadow import (
    disagreement_test,
    mcnemar_test,
    paired_accuracy_safety,
    wilcoxon_test,
)

RNG = np.random.default_rng(9)


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs() -> None:
    baseline = RNG.random(400) < 0.9
    shadow = baseline.copy()
    flip = RNG.random(400) < 0.08
    shadow[flip] = ~shadow[flip]
    result = mcnemar_test(baseline, shadow)
    only_b = int(np.sum(baseline & ~shadow))
    only_s = int(np.sum(~baseline & shadow))
    expected = stats.binomtest(only_b, only_b + only_s, 0.5, alternative="greater").pvalue
    assert result.p_value == pytest.approx(expected)
    assert result.effect_size == pytest.approx((only_s - only_b) / 400)
    assert result.test == "mcnemar_exact"


def test_mcnemar_fails_a_clearly_worse_shadow() -> None:
    baseline = np.ones(200, dtype=bool)
    shadow = np.r_[np.zeros(30, dtype=bool), np.ones(170, dtype=bool)]
    assert mcnemar_test(baseline, shadow).verdict == "fail"


def test_disagreement_rate_binomial() -> None:
    baseline = np.zeros(500, dtype=int)
    shadow = (RNG.random(500) < 0.1).astype(int)
    result = disagreement_test(baseline, shadow, max_rate=0.05)
    k = int(shadow.sum())
    assert result.effect_size == pytest.approx(k / 500)
    assert result.p_value == pytest.approx(
        stats.binomtest(k, 500, 0.05, alternative="greater").pvalue
    )
    assert result.verdict == "fail"


def test_wilcoxon_matches_scipy() -> None:
    baseline = RNG.normal(size=200)
    shadow = baseline + RNG.normal(0.1, 0.2, size=200)
    result = wilcoxon_test(baseline, shadow)
    ref = stats.wilcoxon(shadow - baseline)
    assert result.statistic == pytest.approx(ref.statistic)
    assert result.p_value == pytest.approx(ref.pvalue)
    assert result.verdict == "fail"
    assert wilcoxon_test(baseline, baseline).p_value == 1.0


def test_paired_tests_need_equal_lengths() -> None:
    with pytest.raises(ValueError, match="one shadow value per baseline value"):
        wilcoxon_test([1.0, 2.0], [1.0])


def test_disagreement_passes_only_when_proven_below_the_max() -> None:
    from monitors.shadow import disagreement_safety

    same = np.zeros(2000, dtype=int)
    few = (RNG.random(2000) < 0.01).astype(int)  # 1% differ, max 5%: proven below
    assert disagreement_safety(same, few, max_rate=0.05, alpha=0.05).verdict == "pass"
    little = disagreement_safety(same[:40], few[:40], max_rate=0.05, alpha=0.05)
    assert little.verdict == "inconclusive"  # 40 pairs cannot prove a rate below 5%
    many = (RNG.random(2000) < 0.12).astype(int)
    worse = disagreement_safety(same, many, max_rate=0.05, alpha=0.05)
    assert worse.verdict == "fail" and worse.ci_low > 0.05
    exact = stats.binomtest(int(many.sum()), 2000).proportion_ci(0.95)
    assert worse.ci_low < exact.low and worse.ci_high > exact.high  # valid at every look


def test_disagreement_safety_holds_its_alpha_at_the_margin_over_many_looks() -> None:
    """True rate exactly at the max: passing would be wrong; it passes at most alpha/2 of the
    time however often it is looked at."""
    from monitors.shadow import disagreement_safety

    rng = np.random.default_rng(3)
    runs, wrong = 200, 0
    for _ in range(runs):
        differ = (rng.random(4000) < 0.05).astype(int)
        for n in range(200, 4001, 200):
            if (
                disagreement_safety(np.zeros(n), differ[:n], max_rate=0.05, alpha=0.1).verdict
                == "pass"
            ):
                wrong += 1
                break
    assert wrong / runs <= 0.05 + 2.5 * (0.05 * 0.95 / runs) ** 0.5


def test_paired_shift_is_an_equivalence_test_with_a_margin() -> None:
    from monitors.shadow import paired_shift_safety

    baseline = RNG.normal(size=1000)
    small = baseline + RNG.normal(0.01, 0.02, size=1000)  # median shift 0.01, allowed 0.05
    assert paired_shift_safety(baseline, small, max_shift=0.05, alpha=0.05).verdict == "pass"
    large = baseline + RNG.normal(0.1, 0.02, size=1000)  # 0.1, allowed 0.05
    assert paired_shift_safety(baseline, large, max_shift=0.05, alpha=0.05).verdict == "fail"
    assert paired_shift_safety(baseline, baseline, max_shift=0.0, alpha=0.05).verdict == "pass"
    with pytest.raises(ValueError, match="max_shift"):
        paired_shift_safety(baseline, baseline, max_shift=-1.0, alpha=0.05)


def test_paired_accuracy_is_bounded_by_the_two_discordant_shares() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.random(4000) < 0.9
    shadow = np.where(rng.random(4000) < 0.05, ~baseline, baseline)  # 5% of answers flipped
    result = paired_accuracy_safety(baseline, shadow, max_decrease=0.01, alpha=0.05)
    gains = bernoulli_bounds(int((~baseline & shadow).sum()), 4000, 0.025, 2000)
    losses = bernoulli_bounds(int((baseline & ~shadow).sum()), 4000, 0.025, 2000)
    assert result.ci_low == pytest.approx(gains.low - losses.high)
    assert result.ci_high == pytest.approx(gains.high - losses.low)
    assert result.effect_size == pytest.approx(shadow.mean() - baseline.mean())
    assert result.test == "paired_accuracy_bounds" and result.threshold == -0.01


def test_paired_accuracy_passes_an_equal_shadow_fails_a_worse_one_and_waits_on_little() -> None:
    rng = np.random.default_rng(4)
    baseline = rng.random(20_000) < 0.9
    same = paired_accuracy_safety(baseline, baseline.copy(), max_decrease=0.01, alpha=0.05)
    assert same.verdict == "pass"  # no discordant pair in 20,000: proven within a point
    worse = np.where(rng.random(20_000) < 0.1, False, baseline)  # 9 points less accurate
    assert paired_accuracy_safety(baseline, worse, max_decrease=0.01, alpha=0.05).verdict == "fail"
    few = paired_accuracy_safety(baseline[:50], worse[:50], max_decrease=0.01, alpha=0.05)
    assert few.verdict == "inconclusive"
    empty = paired_accuracy_safety([], [], max_decrease=0.01, alpha=0.05)
    assert empty.verdict == "inconclusive" and empty.n_canary == 0
    with pytest.raises(ValueError, match="max_decrease"):
        paired_accuracy_safety(baseline, worse, max_decrease=1.5, alpha=0.05)


def test_paired_accuracy_at_the_margin_fails_in_at_most_alpha_of_runs_however_often_looked_at() -> (
    None
):
    """Shadow exactly 2 points less accurate (margin 2): looks every 500 pairs to 10,000."""
    rng = np.random.default_rng(5)
    alpha, runs, failed = 0.1, 150, 0
    for _ in range(runs):
        u = rng.random(10_000)
        baseline = u < 0.90
        shadow = u < 0.88  # right only where the baseline is, 2 points less often
        for n in range(500, 10_001, 500):
            verdict = paired_accuracy_safety(
                baseline[:n], shadow[:n], max_decrease=0.02, alpha=alpha
            ).verdict
            if verdict == "fail":
                failed += 1
                break
    assert failed / runs <= alpha
