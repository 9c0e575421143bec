"""Operational gates: error rate (two-proportion z) and latency (Mann-Whitney + HL shift)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitors._hodges_lehmann import hodges_lehmann
from monitors.operational import error_rate_test, latency_test
from monitors.sequential import always_valid_p

ALPHA = 0.05
RUNS = 200
FAILS_LOW = int(stats.binom.ppf(0.001, RUNS, ALPHA))
FAILS_HIGH = int(stats.binom.isf(0.001, RUNS, ALPHA))


# --- error rate -----------------------------------------------------------------------------


def test_error_rate_z_squared_equals_uncorrected_chi_square_and_p_is_one_sided() -> None:
    baseline_errors, baseline_n, canary_errors, canary_n = 10, 1000, 25, 1100
    table = [
        [baseline_errors, baseline_n - baseline_errors],
        [canary_errors, canary_n - canary_errors],
    ]
    chi2 = stats.chi2_contingency(table, correction=False)

    result = error_rate_test(baseline_errors, baseline_n, canary_errors, canary_n)

    assert result.test == "two_proportion_z"
    assert result.gate == "error_rate"
    assert result.statistic > 0  # the canary is worse
    assert result.statistic**2 == pytest.approx(chi2.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(chi2.pvalue / 2, rel=1e-8)
    assert result.effect_size == pytest.approx(25 / 1100 - 10 / 1000, rel=1e-12)
    assert result.verdict == "fail"
    assert result.details["baseline_rate"] == 0.01
    assert result.details["canary_rate"] == pytest.approx(25 / 1100)


def test_error_rate_with_a_margin_uses_the_unpooled_standard_error() -> None:
    result = error_rate_test(10, 1000, 21, 1000, max_increase=0.005)

    baseline_rate, canary_rate = 0.010, 0.021
    se = math.sqrt(
        baseline_rate * (1 - baseline_rate) / 1000 + canary_rate * (1 - canary_rate) / 1000
    )
    z = (canary_rate - baseline_rate - 0.005) / se
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(stats.norm.sf(z), rel=1e-12)
    assert result.details["se"] == pytest.approx(se, rel=1e-12)
    assert result.verdict == "pass"  # +1.10 pts is not significantly more than +0.50 pts
    assert "+1.10 pts" in result.reason


def test_error_rate_failure_reason_reads_as_one_sentence() -> None:
    result = error_rate_test(100, 10_000, 210, 10_000, max_increase=0.005)

    assert result.verdict == "fail"
    assert result.reason.startswith(
        "canary error rate 2.10% vs baseline 1.00% (+1.10 pts > max 0.50 pts), p="
    )
    assert result.reason.endswith("< 0.05")


@pytest.mark.parametrize(
    ("baseline_errors", "canary_errors", "max_increase", "verdict", "p_value"),
    [
        (0, 0, 0.0, "pass", 0.5),  # nothing fails anywhere: z = 0
        (0, 0, 0.01, "pass", 1.0),  # below the margin with certainty
        (1000, 1000, 0.01, "pass", 1.0),  # both arms always fail: not the canary's fault
        (0, 1000, 0.01, "fail", 0.0),  # the canary always fails, the baseline never
    ],
)
def test_error_rate_with_zero_standard_error_does_not_divide_by_zero(
    baseline_errors: int, canary_errors: int, max_increase: float, verdict: str, p_value: float
) -> None:
    result = error_rate_test(baseline_errors, 1000, canary_errors, 1000, max_increase=max_increase)

    assert result.verdict == verdict
    assert result.p_value == p_value


def test_error_rate_aa_false_fail_rate_is_alpha() -> None:
    rng = np.random.default_rng(10)
    fails = sum(
        error_rate_test(
            int(rng.binomial(5000, 0.02)), 5000, int(rng.binomial(5000, 0.02)), 5000
        ).verdict
        == "fail"
        for _ in range(RUNS)
    )

    assert FAILS_LOW <= fails <= FAILS_HIGH


def test_error_rate_fails_a_clearly_worse_canary_and_passes_a_better_one() -> None:
    assert error_rate_test(20, 2000, 80, 2000, max_increase=0.005).verdict == "fail"
    assert error_rate_test(80, 2000, 20, 2000).verdict == "pass"


def test_error_rate_with_too_little_data_is_inconclusive() -> None:
    result = error_rate_test(0, 50, 30, 1000)

    assert result.verdict == "inconclusive"
    assert "50 more baseline requests" in result.reason
    assert result.details["baseline_needed"] == 50


def test_error_rate_with_no_requests_yet_is_inconclusive_without_numbers() -> None:
    result = error_rate_test(0, 0, 0, 0)

    assert result.verdict == "inconclusive"
    assert result.p_value is None
    assert math.isnan(result.effect_size)
    assert "100 more baseline and 100 more canary requests" in result.reason


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((11, 10, 0, 10), {}, "baseline_errors \\(11\\) cannot exceed baseline_n \\(10\\)"),
        ((0, 10, 11, 10), {}, "canary_errors"),
        ((-1, 10, 0, 10), {}, "baseline_errors"),
        ((0, 10.0, 0, 10), {}, "baseline_n"),
        ((0, 10, True, 10), {}, "canary_errors"),
        ((0, 10, 0, 10), {"max_increase": -0.01}, "max_increase"),
        ((0, 10, 0, 10), {"max_increase": 1.0}, "max_increase"),
        ((0, 10, 0, 10), {"alpha": 0.0}, "alpha"),
        ((0, 10, 0, 10), {"min_n": 0}, "min_n"),
        ((0, 10, 0, 10), {"gate": ""}, "gate"),
    ],
)
def test_error_rate_bad_parameters_raise(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        error_rate_test(*args, **kwargs)  # type: ignore[arg-type]


# --- latency --------------------------------------------------------------------------------


def _latencies(rng: np.random.Generator, n: int, median_ms: float) -> np.ndarray:
    return rng.lognormal(math.log(median_ms), 0.4, size=n)


def test_latency_p_value_equals_scipy_mann_whitney() -> None:
    rng = np.random.default_rng(11)
    baseline, canary = _latencies(rng, 300, 100.0), _latencies(rng, 280, 104.0)

    result = latency_test(baseline, canary)
    expected = stats.mannwhitneyu(canary, baseline, alternative="greater")

    assert result.test == "mann_whitney"
    assert result.gate == "latency"
    assert result.statistic == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_latency_hodges_lehmann_shift_is_the_median_of_pairwise_differences() -> None:
    rng = np.random.default_rng(12)
    baseline, canary = _latencies(rng, 150, 100.0), _latencies(rng, 131, 120.0)
    differences = np.subtract.outer(canary, baseline).ravel()

    result = latency_test(baseline, canary)

    assert result.effect_size == pytest.approx(np.median(differences), rel=1e-12)
    assert result.details["hl_shift_ms"] == result.effect_size


def test_latency_hodges_lehmann_interval_is_the_rank_interval_of_the_differences() -> None:
    rng = np.random.default_rng(13)
    baseline, canary = _latencies(rng, 60, 100.0), _latencies(rng, 50, 110.0)
    differences = np.sort(np.subtract.outer(canary, baseline).ravel())
    n_pairs = differences.size
    k = math.floor(n_pairs / 2 - stats.norm.isf(ALPHA) * math.sqrt(60 * 50 * 111 / 12))

    result = latency_test(baseline, canary)

    assert result.details["hl_ci_level"] == pytest.approx(0.9)
    assert result.details["hl_ci_low"] == differences[k - 1]
    assert result.details["hl_ci_high"] == differences[n_pairs - k]
    assert result.details["hl_ci_low"] < result.effect_size < result.details["hl_ci_high"]


def test_latency_hodges_lehmann_subsamples_large_arms_deterministically() -> None:
    rng = np.random.default_rng(14)
    baseline = rng.normal(200.0, 20.0, size=3000)
    canary = rng.normal(210.0, 20.0, size=2500)  # 7.5e6 pairs > 4e6

    first = latency_test(baseline, canary)
    second = latency_test(baseline, canary)
    exact = np.median(np.subtract.outer(canary, baseline))

    assert first.details["hl_subsampled"] == 1.0
    assert first.effect_size == second.effect_size
    assert first.effect_size == pytest.approx(exact, abs=0.2)
    assert first.details["hl_ci_low"] < exact < first.details["hl_ci_high"]


def test_hodges_lehmann_thinning_keeps_a_small_arm_whole() -> None:
    rng = np.random.default_rng(15)
    baseline, canary = rng.normal(size=10), rng.normal(1.0, 1.0, size=1000)

    thinned = hodges_lehmann(baseline, canary, ci_level=0.9, max_pairs=5000)
    exact = hodges_lehmann(baseline, canary, ci_level=0.9)

    assert thinned.subsampled and not exact.subsampled
    assert exact.estimate == pytest.approx(np.median(np.subtract.outer(canary, baseline)))
    assert thinned.estimate == pytest.approx(exact.estimate, abs=0.05)


def test_latency_details_hold_the_quantiles_and_their_ratio() -> None:
    rng = np.random.default_rng(16)
    baseline, canary = _latencies(rng, 200, 100.0), _latencies(rng, 200, 100.0)

    result = latency_test(baseline, canary, quantile=0.99)

    assert result.details["baseline_quantile"] == np.quantile(baseline, 0.99)
    assert result.details["canary_quantile"] == np.quantile(canary, 0.99)
    assert result.details["quantile_ratio"] == pytest.approx(
        np.quantile(canary, 0.99) / np.quantile(baseline, 0.99)
    )
    assert "p99 latency" in result.reason


def test_latency_fails_only_when_slower_and_over_the_ratio() -> None:
    rng = np.random.default_rng(17)
    baseline = _latencies(rng, 400, 100.0)
    much_slower = _latencies(rng, 400, 150.0)
    slightly_slower = _latencies(rng, 4000, 104.0)

    failed = latency_test(baseline, much_slower)
    tolerated = latency_test(_latencies(rng, 4000, 100.0), slightly_slower)
    strict = latency_test(baseline, much_slower, max_ratio=2.0)

    assert failed.verdict == "fail"
    assert failed.details["quantile_ratio"] > 1.2
    assert "ratio" in failed.reason and "> max 1.2" in failed.reason
    assert tolerated.p_value is not None and tolerated.p_value < ALPHA
    assert tolerated.verdict == "pass"
    assert "within the allowed ratio" in tolerated.reason
    assert strict.verdict == "pass"


def test_latency_passes_a_faster_canary() -> None:
    rng = np.random.default_rng(18)

    result = latency_test(_latencies(rng, 300, 100.0), _latencies(rng, 300, 70.0))

    assert result.verdict == "pass"
    assert result.effect_size < 0
    assert result.p_value is not None and result.p_value > 0.99


def test_latency_aa_false_fail_rate_is_at_most_alpha() -> None:
    rng = np.random.default_rng(19)
    significant = 0
    for _ in range(RUNS):
        result = latency_test(_latencies(rng, 100, 100.0), _latencies(rng, 100, 100.0))
        assert result.verdict in ("pass", "fail")
        significant += result.p_value is not None and result.p_value < ALPHA

    assert FAILS_LOW <= significant <= FAILS_HIGH


def test_latency_with_identical_values_in_both_arms_passes() -> None:
    result = latency_test([5.0] * 40, [5.0] * 40)

    assert result.verdict == "pass"
    assert result.p_value == 1.0
    assert result.effect_size == 0.0
    assert result.details["quantile_ratio"] == 1.0


def test_latency_with_a_zero_baseline_quantile_has_an_infinite_ratio() -> None:
    result = latency_test([0.0] * 40, [10.0] * 40)

    assert result.details["quantile_ratio"] == math.inf
    assert result.verdict == "fail"
    assert result.to_dict()["details"]["quantile_ratio"] is None  # type: ignore[index]


def test_latency_with_too_little_data_is_inconclusive() -> None:
    rng = np.random.default_rng(20)

    result = latency_test(_latencies(rng, 40, 100.0), _latencies(rng, 12, 300.0))

    assert result.verdict == "inconclusive"
    assert "18 more canary requests" in result.reason
    assert result.effect_size > 0  # the interim estimate is still reported


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantile": 0.0}, "quantile"),
        ({"quantile": 1.0}, "quantile"),
        ({"max_ratio": 0.9}, "max_ratio"),
        ({"max_ratio": math.inf}, "max_ratio"),
        ({"alpha": 0.7}, "alpha"),
        ({"min_n": 1.5}, "min_n"),
        ({"baseline_ms": [-1.0, 2.0]}, "baseline_ms must be >= 0"),
        ({"canary_ms": [1.0, math.inf]}, "canary_ms holds 1 NaN/inf"),
        ({"canary_ms": ["fast"]}, "canary_ms must be numeric"),
    ],
)
def test_latency_bad_parameters_raise(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"baseline_ms": [1.0, 2.0], "canary_ms": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        latency_test(**arguments)  # type: ignore[arg-type]


def test_sequential_latency_uses_the_standardised_u_statistic() -> None:
    rng = np.random.default_rng(31)
    baseline = np.round(rng.lognormal(3.0, 0.4, 300))  # whole ms: ties
    canary = np.round(rng.lognormal(3.1, 0.4, 250))
    result = latency_test(baseline, canary, sequential=True, tau=0.1)
    ref = stats.mannwhitneyu(canary, baseline, alternative="greater", use_continuity=False)
    z = float(stats.norm.isf(ref.pvalue))
    theta = result.statistic / (300 * 250) - 0.5
    assert result.p_value == pytest.approx(float(always_valid_p(theta, (theta / z) ** 2, 0.1)))
    assert result.details["sequential"] == 1.0
    assert (result.p_value or 0.0) >= result.details["fixed_horizon_p"]


def test_sequential_error_rate_reports_the_requests_needed_for_power() -> None:
    result = error_rate_test(10, 1000, 12, 1000, max_increase=0.0, sequential=True)
    assert result.verdict == "pass"
    assert result.details["n_for_power"] > 1000
    assert result.details["tau"] == 0.01
    with pytest.raises(ValueError, match="tau"):
        error_rate_test(1, 10, 1, 10, sequential=True, tau=0.0)


def test_require_power_keeps_an_underpowered_pass_inconclusive() -> None:
    result = error_rate_test(2, 300, 3, 300, max_increase=0.0, sequential=True, require_power=True)
    n_power = int(result.details["n_for_power"])
    assert result.verdict == "inconclusive"
    assert "underpowered" in result.reason and f"({n_power} per arm)" in result.reason
    assert result.details["canary_needed"] == n_power - 300
    powered = error_rate_test(
        20, 3000, 22, 3000, max_increase=0.0, sequential=True, require_power=True
    )
    assert powered.verdict == "pass"
