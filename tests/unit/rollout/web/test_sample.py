"""The rollout page's statistics, each checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rollout.web.sample import feature_drift, quantile_interval, wilson


@pytest.mark.parametrize(("errors", "n"), [(0, 50), (3, 50), (17, 400), (50, 50)])
def test_wilson_interval_is_scipys(errors: int, n: int) -> None:
    got = wilson(errors, n)
    want = stats.binomtest(errors, n).proportion_ci(method="wilson")
    assert got.estimate == pytest.approx(errors / n)
    assert (got.low, got.high) == pytest.approx((want.low, want.high), abs=1e-9)
    assert got.low <= got.estimate <= got.high


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_quantile_interval_holds_the_estimate_and_covers_the_truth(q: float) -> None:
    rng = np.random.default_rng(7)
    truth = float(stats.expon.ppf(q, scale=10))
    covered = 0
    for _ in range(200):
        values = rng.exponential(10, 800).tolist()
        got = quantile_interval(values, q)
        assert got.low <= got.estimate <= got.high
        assert got.estimate == pytest.approx(float(np.quantile(values, q)))
        covered += got.low <= truth <= got.high
    assert covered >= 180  # a 95% interval: about 190 of 200


def test_features_are_compared_by_scipys_ks_test_and_corrected_across_features() -> None:
    rng = np.random.default_rng(3)
    baseline = [{"a": float(v), "b": float(w), "t": "x"} for v, w in rng.normal(0, 1, (300, 2))]
    canary = [
        {"a": float(v) + 1, "b": float(w) + 0.6, "t": "x"} for v, w in rng.normal(0, 1, (200, 2))
    ]
    table = feature_drift(baseline, canary)
    assert table is not None
    assert [f.name for f in table.features][:2] == ["a", "b"]
    assert table.flagged == 2  # a shifted by 1 sd, b by 0.6: found; t the same in both arms
    a = stats.ks_2samp([r["a"] for r in baseline], [r["a"] for r in canary])
    assert table.features[0].distance == pytest.approx(a.statistic)
    assert table.features[0].p_value == pytest.approx(a.pvalue, rel=1e-6)
    assert table.chance is not None and table.chance.rounds == 20
    assert feature_drift(baseline[:1], canary) is None
