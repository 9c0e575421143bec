"""The mixture supermartingales equal their definitions (a numerical integral over the mixing
distribution), their boundaries are where the e-value reaches 1/alpha, and a true null crosses
them no more often than alpha however long it is watched (simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from monitors.boundaries import (
    BetaBinomialMixture,
    GammaExponentialMixture,
    NormalMixture,
    best_rho,
)

POINTS = [(0.0, 1.0), (3.0, 10.0), (-2.0, 10.0), (25.0, 200.0), (60.0, 1000.0)]


@pytest.mark.parametrize("one_sided", [True, False])
@pytest.mark.parametrize(("s", "v"), POINTS)
def test_normal_mixture_is_the_integral_of_its_mixture(one_sided: bool, s: float, v: float) -> None:
    mixture = NormalMixture(100.0, 0.05, one_sided=one_sided)
    sd = 1 / math.sqrt(mixture.rho)

    def integrand(lam: float) -> float:
        weight = 2 * stats.norm.pdf(lam, 0, sd) if one_sided else stats.norm.pdf(lam, 0, sd)
        return weight * math.exp(lam * s - lam * lam * v / 2)

    low = 0.0 if one_sided else -np.inf
    value, _ = integrate.quad(integrand, low, np.inf)
    assert mixture.log_e(s, v) == pytest.approx(math.log(value), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("c", [0.5, 3.0, 22.0])
@pytest.mark.parametrize(("s", "v"), POINTS)
def test_gamma_exponential_mixture_is_the_integral_of_its_mixture(
    c: float, s: float, v: float
) -> None:
    mixture = GammaExponentialMixture(200.0, 0.025, c)
    rho = mixture.rho

    def density(lam: float) -> float:
        return (1 - c * lam) ** (rho / c**2 - 1) * math.exp(lam * rho / c)

    def supermartingale(lam: float) -> float:
        psi = (-math.log1p(-c * lam) - c * lam) / c**2
        return math.exp(lam * s - psi * v)

    norm, _ = integrate.quad(density, 0, 1 / c, limit=200)
    value, _ = integrate.quad(lambda lam: density(lam) * supermartingale(lam), 0, 1 / c, limit=200)
    assert mixture.log_e(s, v) == pytest.approx(math.log(value / norm), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("p0", [0.001, 0.05, 0.5])
@pytest.mark.parametrize(("n", "successes"), [(10, 0), (200, 3), (2000, 9), (2000, 160)])
def test_beta_binomial_mixture_is_the_beta_prior_bayes_factor(
    p0: float, n: int, successes: int
) -> None:
    mixture = BetaBinomialMixture(n * p0 * (1 - p0), 0.05, p0, 1 - p0, one_sided=False)
    s, v = successes - n * p0, n * p0 * (1 - p0)
    a, b = mixture.r / (1 - p0), mixture.r / p0  # the beta prior on the mean
    log_marginal = (
        math.lgamma(a + successes)
        + math.lgamma(b + n - successes)
        - math.lgamma(a + b + n)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    log_null = successes * math.log(p0) + (n - successes) * math.log1p(-p0)
    assert mixture.log_e(s, v) == pytest.approx(log_marginal - log_null, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    "mixture",
    [
        NormalMixture(50.0, 0.05, one_sided=True),
        NormalMixture(50.0, 0.05, one_sided=False),
        GammaExponentialMixture(50.0, 0.05, 2.0),
        BetaBinomialMixture(50.0, 0.05, 0.01, 0.99, one_sided=True),
        BetaBinomialMixture(50.0, 0.05, 0.3, 0.7, one_sided=False),
    ],
    ids=["normal-1", "normal-2", "gamma-exp", "beta-binomial-1", "beta-binomial-2"],
)
def test_a_boundary_is_where_the_e_value_reaches_one_over_alpha(mixture: object) -> None:
    assert mixture.log_e(0.0, 0.0) == pytest.approx(0.0, abs=1e-9)  # type: ignore[attr-defined]
    for v in (30.0, 500.0):
        bound = mixture.bound(v, 0.01)  # type: ignore[attr-defined]
        assert mixture.log_e(bound, v) == pytest.approx(math.log(100), abs=1e-6)  # type: ignore[attr-defined]
        assert mixture.log_e(bound * 0.99, v) < math.log(100)  # type: ignore[attr-defined]


def test_a_boundary_out_of_reach_is_infinite() -> None:
    """One Bernoulli(0.3) trial's worth of variance cannot carry 100-fold evidence."""
    mixture = BetaBinomialMixture(50.0, 0.05, 0.3, 0.7, one_sided=False)
    assert mixture.bound(1.0, 0.01) == math.inf
    assert mixture.log_e(1.0 / 0.3, 1.0) < math.log(100)  # the most the data can say


def test_the_two_sided_normal_bound_has_its_closed_form() -> None:
    mixture = NormalMixture(100.0, 0.05, one_sided=False)
    for v in (1.0, 100.0, 1e4):
        closed = mixture.bound(v, 0.05)
        assert mixture.log_e(closed, v) == pytest.approx(math.log(20), abs=1e-9)


def test_the_tuned_mixture_is_tightest_near_its_intrinsic_time() -> None:
    bounds = {v_opt: NormalMixture(v_opt, 0.05).bound(1000.0, 0.05) for v_opt in (10, 1000, 1e5)}
    assert bounds[1000] < bounds[10] and bounds[1000] < bounds[1e5]
    assert best_rho(1000.0, 0.05, one_sided=True) == pytest.approx(
        1000.0 / (2 * math.log(10) + math.log(1 + 2 * math.log(10)))
    )


def _crossing_rate(increments: np.ndarray, variances: np.ndarray, mixture: object) -> float:
    """Share of runs (rows) whose running (sum, variance) ever crosses the 0.05 boundary."""
    s, v = np.cumsum(increments, axis=1), np.cumsum(variances, axis=1)
    looks = np.unique(np.geomspace(1, s.shape[1], 60).astype(int)) - 1
    crossed = 0
    for run in range(s.shape[0]):
        for t in looks:
            if s[run, t] >= mixture.bound(float(v[run, t]), 0.05):  # type: ignore[attr-defined]
                crossed += 1
                break
    return crossed / s.shape[0]


@pytest.mark.parametrize("p", [0.002, 0.05, 0.5])
def test_a_true_null_rarely_crosses_the_beta_binomial_boundary(p: float) -> None:
    rng = np.random.default_rng(7)
    runs, n = 400, 3000
    y = (rng.random((runs, n)) < p).astype(float)
    mixture = BetaBinomialMixture(n * p * (1 - p) / 4, 0.05, p, 1 - p, one_sided=True)
    rate = _crossing_rate(y - p, np.full_like(y, p * (1 - p)), mixture)
    assert rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / runs)


def test_a_true_null_rarely_crosses_the_gamma_exponential_boundary() -> None:
    rng = np.random.default_rng(8)
    runs, n = 400, 2000
    x = rng.beta(0.5, 3.0, (runs, n)) * 4.0  # bounded in [0, 4], skewed
    mean = 4.0 * 0.5 / 3.5
    predicted = np.concatenate([np.full((runs, 1), 2.0), np.cumsum(x, axis=1)[:, :-1]], axis=1)
    predicted[:, 1:] /= np.arange(1, n)
    variance = (x - np.clip(predicted, 0, 4)) ** 2  # the empirical-Bernstein variance process
    mixture = GammaExponentialMixture(500.0, 0.05, 4.0)
    rate = _crossing_rate(x - mean, variance, mixture)
    assert rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / runs)


def test_a_weighted_mixture_is_the_weighted_e_value_and_helps_far_from_the_main_design() -> None:
    from monitors.boundaries import GammaExponentialMixture, WeightedMixture

    main, small = (
        GammaExponentialMixture(200_000, 0.01, 22.0),
        GammaExponentialMixture(2_000, 0.01, 22.0),
    )
    mixed = WeightedMixture([(0.7, main), (0.3, small)])
    s, v = 150.0, 900.0
    expected = math.log(0.7 * math.exp(main.log_e(s, v)) + 0.3 * math.exp(small.log_e(s, v)))
    assert mixed.log_e(s, v) == pytest.approx(expected, rel=1e-12)
    far = 1_000.0  # V far below the main design: the mixture's boundary is much nearer
    assert mixed.bound(far, 0.01, 1e6) < 0.8 * main.bound(far, 0.01)
    with pytest.raises(ValueError, match="sum to 1"):
        WeightedMixture([(0.5, main)])
