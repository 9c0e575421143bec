"""Quality gate: accuracy non-inferiority on delayed labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitors.names import LossMetric
from monitors.operational import error_rate_test
from monitors.quality import accuracy_test, auc_test, delong, loss_test, per_request_loss

ALPHA = 0.05
RUNS = 200
FAILS_LOW = int(stats.binom.ppf(0.001, RUNS, ALPHA))
FAILS_HIGH = int(stats.binom.isf(0.001, RUNS, ALPHA))


def _correct(n: int, n_right: int) -> np.ndarray:
    return np.arange(n) < n_right


def test_accuracy_without_margin_matches_uncorrected_chi_square() -> None:
    baseline, canary = _correct(800, 720), _correct(900, 765)  # 90% vs 85%
    chi2 = stats.chi2_contingency([[720, 80], [765, 135]], correction=False)

    result = accuracy_test(baseline, canary, max_decrease=0.0)

    assert result.test == "accuracy_z"
    assert result.gate == "quality"
    assert result.statistic**2 == pytest.approx(chi2.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(chi2.pvalue / 2, rel=1e-8)
    assert result.effect_size == pytest.approx(0.85 - 0.90)
    assert result.details["baseline_accuracy"] == 0.9
    assert result.details["canary_accuracy"] == pytest.approx(0.85)
    assert result.verdict == "fail"


def test_accuracy_with_a_margin_uses_the_unpooled_standard_error() -> None:
    result = accuracy_test(_correct(1000, 900), _correct(1000, 880), max_decrease=0.01)

    se = math.sqrt(0.9 * 0.1 / 1000 + 0.88 * 0.12 / 1000)
    z = (0.90 - 0.88 - 0.01) / se
    assert result.statistic == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(stats.norm.sf(z), rel=1e-10)
    assert result.verdict == "pass"


def test_accuracy_is_the_error_rate_test_on_wrong_predictions() -> None:
    accuracy = accuracy_test(_correct(600, 540), _correct(700, 600), max_decrease=0.02)
    errors = error_rate_test(60, 600, 100, 700, max_increase=0.02)

    assert accuracy.statistic == pytest.approx(errors.statistic, rel=1e-12)
    assert accuracy.p_value == pytest.approx(errors.p_value, rel=1e-12)
    assert accuracy.effect_size == pytest.approx(-errors.effect_size, rel=1e-12)


def test_accuracy_accepts_lists_of_bools_and_zero_one_numbers() -> None:
    as_bools = accuracy_test([True, False] * 30, [True] * 60)
    as_ints = accuracy_test([1, 0] * 30, [1] * 60)
    as_floats = accuracy_test(np.array([1.0, 0.0] * 30), np.ones(60))

    assert as_bools == as_ints == as_floats
    assert as_bools.effect_size == 0.5
    assert as_bools.verdict == "pass"


def test_accuracy_aa_false_fail_rate_is_alpha() -> None:
    rng = np.random.default_rng(30)
    fails = sum(
        accuracy_test(rng.random(2000) < 0.9, rng.random(2000) < 0.9, max_decrease=0.0).verdict
        == "fail"
        for _ in range(RUNS)
    )

    assert FAILS_LOW <= fails <= FAILS_HIGH


def test_accuracy_fails_a_clearly_worse_canary() -> None:
    rng = np.random.default_rng(31)

    result = accuracy_test(rng.random(3000) < 0.92, rng.random(3000) < 0.85)

    assert result.verdict == "fail"
    assert result.reason.startswith("canary accuracy 8")
    assert "worse than the allowed -1.00 pts" in result.reason


def test_accuracy_within_the_margin_passes() -> None:
    result = accuracy_test(_correct(20_000, 18_000), _correct(20_000, 17_950), max_decrease=0.01)

    assert result.verdict == "pass"
    assert result.details["diff_lower_bound"] > -0.01


def test_accuracy_with_too_little_data_is_inconclusive() -> None:
    result = accuracy_test([True] * 60, [False] * 20)

    assert result.verdict == "inconclusive"
    assert "30 more canary labelled predictions" in result.reason
    assert result.details["canary_needed"] == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_correct": [0, 1, 2]}, "baseline_correct must hold only 0/1"),
        ({"canary_correct": ["yes"]}, "canary_correct must be booleans"),
        ({"canary_correct": [[True]]}, "one-dimensional"),
        ({"max_decrease": -0.01}, "max_decrease"),
        ({"max_decrease": 1.5}, "max_decrease"),
        ({"alpha": math.nan}, "alpha"),
        ({"min_n": 0}, "min_n"),
        ({"gate": 3}, "gate"),
    ],
)
def test_accuracy_bad_parameters_raise(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "baseline_correct": [True, False],
        "canary_correct": [True, True],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        accuracy_test(**arguments)  # type: ignore[arg-type]


def test_sequential_accuracy_keeps_the_statistic_and_raises_the_p_value() -> None:
    rng = np.random.default_rng(21)
    baseline, canary = rng.random(2000) < 0.9, rng.random(2000) < 0.88
    fixed = accuracy_test(baseline, canary, max_decrease=0.0)
    sequential = accuracy_test(baseline, canary, max_decrease=0.0, sequential=True)
    assert sequential.statistic == fixed.statistic
    assert sequential.details["fixed_horizon_p"] == fixed.p_value
    assert (sequential.p_value or 0.0) >= (fixed.p_value or 1.0)
    assert sequential.details["n_for_power"] > 0
    assert "always-valid" in sequential.reason


def test_auc_matches_mann_whitney_and_fails_a_worse_ranker() -> None:
    rng = np.random.default_rng(22)
    labels_b, labels_c = rng.random(600) < 0.4, rng.random(500) < 0.4
    scores_b = labels_b * 1.5 + rng.normal(size=600)
    scores_c = labels_c * 0.5 + rng.normal(size=500)
    result = auc_test(scores_b, labels_b, scores_c, labels_c, max_decrease=0.01)
    u = stats.mannwhitneyu(scores_b[labels_b], scores_b[~labels_b]).statistic
    expected = u / (labels_b.sum() * (~labels_b).sum())
    assert result.details["baseline_auc"] == pytest.approx(expected)
    assert result.verdict == "fail" and result.effect_size < -0.1
    _, variance = delong(scores_b, labels_b)
    assert 0.0 < variance < 0.01


def test_auc_without_both_classes_is_inconclusive() -> None:
    scores = np.linspace(0.0, 1.0, 60)
    result = auc_test(scores, np.ones(60), scores, np.ones(60))
    assert result.verdict == "inconclusive"


@pytest.mark.parametrize("metric", ["mae", "rmse", "log_loss"])
def test_loss_metrics_compare_means_with_a_margin(metric: LossMetric) -> None:
    rng = np.random.default_rng(23)
    labels = (rng.random(800) < 0.5).astype(float)
    good = np.clip(labels * 0.8 + 0.1 + rng.normal(0, 0.05, 800), 0.01, 0.99)
    bad = np.clip(labels * 0.4 + 0.3 + rng.normal(0, 0.05, 800), 0.01, 0.99)
    baseline_loss = per_request_loss(metric, good, labels)
    canary_loss = per_request_loss(metric, bad, labels)
    result = loss_test(baseline_loss, canary_loss, metric=metric, sequential=True)
    assert result.verdict == "fail" and result.test == f"{metric}_z"
    if metric == "mae":
        assert result.effect_size == pytest.approx(
            np.mean(np.abs(bad - labels)) - np.mean(np.abs(good - labels))
        )
    if metric == "rmse":
        rmse = np.sqrt(np.mean((bad - labels) ** 2)) - np.sqrt(np.mean((good - labels) ** 2))
        assert result.effect_size == pytest.approx(rmse)
    if metric == "log_loss":
        expected = -np.mean(labels * np.log(good) + (1 - labels) * np.log(1 - good))
        assert result.details["baseline_log_loss"] == pytest.approx(expected)
    same = loss_test(baseline_loss, baseline_loss, metric=metric, max_increase=0.01)
    assert same.verdict == "pass"
