"""The scipy.stats-free Mann-Whitney and chi-square equal SciPy's on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors._categories import pearson_chi2
from monitors._ranks import average_ranks, mann_whitney_greater


@pytest.mark.parametrize("seed", range(20))
def test_average_ranks_equal_rankdata_with_and_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 15, 60).astype(float) if seed % 2 else rng.normal(size=60)
    ranks, ties = average_ranks(values)
    assert np.array_equal(ranks, stats.rankdata(values))
    assert ties.sum() == values.size
    assert sorted(ties.tolist()) == sorted(np.unique(values, return_counts=True)[1].tolist())


@pytest.mark.parametrize(
    ("n_x", "n_y", "ties"),
    [(300, 280, False), (40, 35, True), (9, 9, False), (5, 7, True), (4, 6, False), (3, 1, False)],
)
def test_mann_whitney_equals_scipy(n_x: int, n_y: int, ties: bool) -> None:
    rng = np.random.default_rng(n_x * 100 + n_y)
    for shift in (0.0, 0.3, -0.3):
        x, y = rng.lognormal(0.0 + shift, 0.5, n_x), rng.lognormal(0.0, 0.5, n_y)
        if ties:
            x, y = np.round(x, 1), np.round(y, 1)
        expected = stats.mannwhitneyu(x, y, alternative="greater")
        u, p = mann_whitney_greater(x, y)
        assert u == expected.statistic
        assert p == pytest.approx(expected.pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_pearson_chi2_equals_chi2_contingency(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(10):
        table = rng.integers(1, 500, size=(2, k))
        expected = stats.chi2_contingency(table, correction=False)
        statistic, p, dof = pearson_chi2(table)
        assert statistic == pytest.approx(expected.statistic, rel=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert dof == expected.dof
