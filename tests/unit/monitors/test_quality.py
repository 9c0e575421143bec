"""Quality gate: accuracy non-inferiority on delayed labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitors.operational import error_rate_test
from monitors.quality import accuracy_test

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
