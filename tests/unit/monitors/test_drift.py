"""Drift gates: KS, chi-square and PSI against scipy / hand formulas, plus seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitors.drift import chi_square_test, ks_test, output_drift, psi, psi_edges

ALPHA = 0.05
RUNS = 200
# Seeded A/A simulations: the number of false fails must lie inside the central 99.8% of
# Binomial(RUNS, alpha); any valid level-alpha test passes this with probability 0.998.
FAILS_LOW = int(stats.binom.ppf(0.001, RUNS, ALPHA))
FAILS_HIGH = int(stats.binom.isf(0.001, RUNS, ALPHA))


# --- KS -------------------------------------------------------------------------------------


def test_ks_statistic_and_p_value_equal_scipy() -> None:
    rng = np.random.default_rng(1)
    baseline, canary = rng.normal(size=300), rng.normal(0.1, 1.0, size=250)

    result = ks_test(baseline, canary)
    expected = stats.ks_2samp(baseline, canary)

    assert result.test == "ks"
    assert result.gate == "output_drift"
    assert result.statistic == pytest.approx(expected.statistic, abs=0)
    assert result.p_value == pytest.approx(expected.pvalue, abs=0)
    assert result.effect_size == result.statistic
    assert (result.n_baseline, result.n_canary) == (300, 250)
    assert result.threshold == ALPHA
    assert result.verdict == ("fail" if expected.pvalue < ALPHA else "pass")


def test_ks_aa_false_fail_rate_is_alpha() -> None:
    rng = np.random.default_rng(2)
    fails = sum(
        ks_test(rng.normal(size=200), rng.normal(size=200)).verdict == "fail" for _ in range(RUNS)
    )

    assert FAILS_LOW <= fails <= FAILS_HIGH


@pytest.mark.parametrize(
    ("shift", "direction", "word"), [(0.5, 1.0, "higher"), (-0.5, -1.0, "lower")]
)
def test_ks_fails_a_clearly_shifted_canary(shift: float, direction: float, word: str) -> None:
    rng = np.random.default_rng(3)

    result = ks_test(rng.normal(size=300), rng.normal(shift, 1.0, size=300))

    assert result.verdict == "fail"
    assert result.p_value is not None and result.p_value < 1e-4
    assert result.details["direction"] == direction
    assert word in result.reason
    assert "p=" in result.reason


def test_ks_with_too_little_data_is_inconclusive_and_says_how_many_more() -> None:
    rng = np.random.default_rng(4)
    baseline, canary = rng.normal(size=20), rng.normal(5.0, 1.0, size=35)

    result = ks_test(baseline, canary, min_n=30)

    assert result.verdict == "inconclusive"
    assert "10 more baseline" in result.reason
    assert "canary" not in result.reason.split("(")[0]  # the canary arm has enough
    assert result.details["baseline_needed"] == 10
    assert result.details["canary_needed"] == 0
    assert result.statistic == stats.ks_2samp(baseline, canary).statistic  # still reported


def test_ks_with_an_empty_arm_reports_nan_statistic_and_no_p_value() -> None:
    result = ks_test([], [1.0, 2.0, 3.0])

    assert result.verdict == "inconclusive"
    assert math.isnan(result.statistic)
    assert result.p_value is None
    assert "30 more baseline and 27 more canary" in result.reason


# --- chi-square -----------------------------------------------------------------------------


def test_chi_square_equals_chi2_contingency_and_cramers_v() -> None:
    rng = np.random.default_rng(5)
    labels = np.array(["cat", "dog", "fish"])
    baseline = rng.choice(labels, size=400, p=[0.5, 0.3, 0.2])
    canary = rng.choice(labels, size=300, p=[0.45, 0.3, 0.25])
    table = np.array([[np.sum(arm == label) for label in labels] for arm in (baseline, canary)])

    result = chi_square_test(baseline, canary)
    expected = stats.chi2_contingency(table, correction=False)

    assert result.test == "chi_square"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.details["dof"] == 2
    assert result.details["n_categories"] == 3
    assert result.effect_size == pytest.approx(math.sqrt(expected.statistic / 700), rel=1e-12)


def test_chi_square_on_a_2x2_table_has_no_yates_correction() -> None:
    baseline = [0] * 80 + [1] * 20
    canary = [0] * 65 + [1] * 35
    table = [[80, 20], [65, 35]]

    result = chi_square_test(baseline, canary)

    assert result.statistic == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic, rel=1e-12
    )
    assert result.statistic != pytest.approx(
        stats.chi2_contingency(table, correction=True).statistic, rel=1e-3
    )


def test_chi_square_uses_the_union_of_categories() -> None:
    baseline = ["a"] * 50 + ["b"] * 50
    canary = ["a"] * 40 + ["b"] * 40 + ["c"] * 20
    table = [[50, 50, 0], [40, 40, 20]]

    result = chi_square_test(baseline, canary)

    assert result.details["n_categories"] == 3
    assert result.statistic == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic, rel=1e-12
    )
    assert result.verdict == "fail"
    assert "'c' 20.0% vs 0.0%" in result.reason
    assert result.details["max_share_diff"] == pytest.approx(0.2)


def test_chi_square_counts_mixed_python_objects() -> None:
    baseline = np.array([None, "x", 1] * 20, dtype=object)
    canary = np.array([None, "x", 1, 1] * 15, dtype=object)
    table = [[20, 20, 20], [15, 15, 30]]

    result = chi_square_test(baseline, canary)

    assert result.statistic == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic, rel=1e-12
    )


def test_chi_square_with_a_single_category_passes() -> None:
    result = chi_square_test(["spam"] * 40, ["spam"] * 60)

    assert result.verdict == "pass"
    assert (result.statistic, result.p_value, result.effect_size) == (0.0, 1.0, 0.0)


def test_chi_square_aa_false_fail_rate_is_alpha() -> None:
    rng = np.random.default_rng(6)
    p = [0.6, 0.25, 0.1, 0.05]
    fails = sum(
        chi_square_test(rng.choice(4, size=300, p=p), rng.choice(4, size=300, p=p)).verdict
        == "fail"
        for _ in range(RUNS)
    )

    assert FAILS_LOW <= fails <= FAILS_HIGH


def test_chi_square_with_too_little_data_is_inconclusive() -> None:
    result = chi_square_test([1, 2] * 10, [1, 2] * 5, min_n=25)

    assert result.verdict == "inconclusive"
    assert "5 more baseline and 15 more canary observations" in result.reason


# --- PSI ------------------------------------------------------------------------------------


def test_psi_edges_are_baseline_quantiles_open_at_both_ends() -> None:
    edges = psi_edges(np.arange(100.0), 4)

    np.testing.assert_allclose(edges, [-np.inf, 24.75, 49.5, 74.25, np.inf])


def test_psi_edges_drop_repeated_quantiles() -> None:
    edges = psi_edges([0.0] * 50 + [1.0] * 50, bins=10)

    np.testing.assert_allclose(edges, [-np.inf, 0.0, 0.5, 1.0, np.inf])


def _hand_psi(baseline_share: list[float], canary_share: list[float]) -> float:
    total = 0.0
    for b, c in zip(baseline_share, canary_share, strict=True):
        b, c = max(b, 1e-4), max(c, 1e-4)
        total += (c - b) * math.log(c / b)
    return total


def test_psi_equals_the_hand_formula() -> None:
    baseline = np.arange(100.0)  # edges 24.75, 49.5, 74.25: a quarter of the baseline per bin
    canary = [0.0] * 10 + [30.0] * 20 + [60.0] * 30 + [90.0] * 40

    result = psi(baseline, canary, bins=4)

    expected = _hand_psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4])
    assert result.test == "psi"
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.effect_size == result.statistic
    assert result.p_value is None
    assert result.threshold == 0.2
    assert result.verdict == "fail"  # 0.228 > 0.2
    assert "PSI 0.228 > threshold 0.2" in result.reason


def test_psi_clips_empty_bins_instead_of_blowing_up() -> None:
    result = psi(np.arange(100.0), [0.0] * 50, bins=4)

    assert result.statistic == pytest.approx(_hand_psi([0.25] * 4, [1.0, 0, 0, 0]), rel=1e-12)
    assert math.isfinite(result.statistic)


def test_psi_bins_are_closed_on_the_right() -> None:
    # values equal to an edge fall in the bin below it, for baseline and canary alike
    baseline = [0.0] * 50 + [1.0] * 50

    assert psi(baseline, baseline).statistic == 0.0
    assert psi(baseline, [0.0] * 100, threshold=10.0).statistic == pytest.approx(
        _hand_psi([0.5, 0, 0.5, 0], [1.0, 0, 0, 0]), rel=1e-12
    )


def test_psi_passes_aa_and_fails_a_shifted_canary() -> None:
    rng = np.random.default_rng(7)
    baseline = rng.normal(size=2000)

    same = psi(baseline, rng.normal(size=2000))
    shifted = psi(baseline, rng.normal(1.0, 1.0, size=2000))

    assert same.verdict == "pass"
    assert same.statistic < 0.05
    assert shifted.verdict == "fail"
    assert shifted.statistic > 0.5


def test_psi_with_too_little_data_is_inconclusive() -> None:
    result = psi(np.arange(100.0), [1.0, 2.0])

    assert result.verdict == "inconclusive"
    assert "28 more canary observations" in result.reason


# --- output_drift ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "canary", "test"),
    [
        (np.linspace(0.0, 1.0, 50), np.linspace(0.1, 1.1, 50), "ks"),
        (np.arange(50) % 3, np.arange(50) % 4, "chi_square"),
        ([0.0, 1.0, 2.0] * 20, [1.0, 2.0] * 30, "chi_square"),
        ([float(i % 11) for i in range(60)], [1.0] * 60, "ks"),
        ([0.5, 1.5] * 30, [0.5, 1.5] * 30, "ks"),
        (["fraud", "ok"] * 30, ["ok"] * 60, "chi_square"),
        ([True, False] * 30, [True] * 60, "chi_square"),
        ([1, 2, 3] * 20, [1.0, 2.0] * 30, "chi_square"),
        ([1, 2, 3] * 20, [1.5, 2.0] * 30, "ks"),
    ],
)
def test_output_drift_auto_picks_the_test_from_the_values(
    baseline: object, canary: object, test: str
) -> None:
    assert output_drift(baseline, canary).test == test  # type: ignore[arg-type]


def test_output_drift_explicit_methods_forward_their_options() -> None:
    rng = np.random.default_rng(8)
    baseline, canary = rng.normal(size=200), rng.normal(0.2, 1.0, size=200)

    as_ks = output_drift(baseline, canary, method="ks", alpha=0.01, gate="score")
    as_psi = output_drift(baseline, canary, method="psi", psi_threshold=0.05)

    assert as_ks == ks_test(baseline, canary, alpha=0.01, gate="score")
    assert as_psi == psi(baseline, canary, threshold=0.05)
    assert as_psi.threshold == 0.05


# --- parameter validation -------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.1, 1.0, math.nan, True, "0.05"])
def test_bad_alpha_raises(alpha: object) -> None:
    with pytest.raises(ValueError, match="alpha"):
        ks_test([1.0] * 40, [1.0] * 40, alpha=alpha)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        chi_square_test([1] * 40, [1] * 40, alpha=alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("min_n", [0, -5, 2.5, True])
def test_bad_min_n_raises(min_n: object) -> None:
    with pytest.raises(ValueError, match="min_n"):
        ks_test([1.0] * 40, [1.0] * 40, min_n=min_n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_n"):
        psi([1.0] * 40, [1.0] * 40, min_n=min_n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ks_test([[1.0, 2.0]], [1.0]), "baseline must be one-dimensional"),
        (lambda: ks_test([1.0, math.nan], [1.0]), "baseline holds 1 NaN/inf"),
        (lambda: ks_test([1.0], ["a", "b"]), "canary must be numeric"),
        (lambda: ks_test([1.0], [1.0], gate=""), "gate"),
        (lambda: chi_square_test(np.ones((3, 2)), [1]), "one-dimensional"),
        (lambda: psi([1.0], [1.0], bins=1), "bins"),
        (lambda: psi([1.0], [1.0], bins=True), "bins"),
        (lambda: psi([1.0], [1.0], bins=4.0), "bins"),  # type: ignore[arg-type]
        (lambda: psi([1.0], [1.0], threshold=0.0), "threshold"),
        (lambda: psi([1.0], [1.0], threshold=math.inf), "threshold"),
        (lambda: psi_edges([], 10), "baseline must be non-empty"),
        (lambda: output_drift([1.0], [1.0], method="energy"), "method"),  # type: ignore[arg-type]
        (lambda: output_drift([1.0], [1.0], psi_threshold=-1.0), "psi_threshold"),
        (lambda: output_drift([1.0], [1.0], alpha=2.0), "alpha"),
    ],
)
def test_bad_parameters_raise_value_error(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
