"""Paired shadow tests against scipy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors.shadow import disagreement_test, mcnemar_test, wilcoxon_test

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
