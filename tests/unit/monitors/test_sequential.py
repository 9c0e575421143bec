"""Always-valid p-values: the closed form against numerical integration, and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from monitors.sequential import (
    TAU_MULTIPLIERS,
    TAU_WEIGHTS,
    always_valid_p,
    check_tau,
    log_evidence,
    log_mixture_ratio,
    n_for_power,
    running_min,
)


def integrated_ratio(x: float, v: float, tau: float, one_sided: bool) -> float:
    """Mixture of Gaussian likelihood ratios exp(d x / v - d^2 / 2v) over the prior on d."""

    def integrand(d: float) -> float:
        prior = stats.halfnorm.pdf(d, scale=tau) if one_sided else stats.norm.pdf(d, scale=tau)
        return float(prior * math.exp(d * x / v - d * d / (2.0 * v)))

    low = 0.0 if one_sided else -12 * tau
    value, _ = integrate.quad(integrand, low, 12 * tau, limit=200)
    return value


@pytest.mark.parametrize("one_sided", [True, False])
@pytest.mark.parametrize(
    ("x", "v", "tau"), [(0.01, 1e-4, 0.02), (-0.02, 4e-4, 0.05), (0.3, 0.01, 0.1)]
)
def test_closed_form_equals_the_integrated_mixture(
    x: float, v: float, tau: float, one_sided: bool
) -> None:
    closed = float(np.exp(log_mixture_ratio(x, v, tau, one_sided=one_sided)))
    assert closed == pytest.approx(integrated_ratio(x, v, tau, one_sided), rel=1e-6)


def test_evidence_is_the_weighted_mixture_over_scales() -> None:
    x, v, tau = 0.05, 4e-4, 0.01
    expected = sum(
        w * float(np.exp(log_mixture_ratio(x, v, tau * m)))
        for m, w in zip(TAU_MULTIPLIERS, TAU_WEIGHTS, strict=True)
    )
    assert float(np.exp(log_evidence(x, v, tau))) == pytest.approx(expected)
    assert sum(TAU_WEIGHTS) == pytest.approx(1.0)


def test_looking_after_every_batch_keeps_the_false_rejection_rate_at_alpha() -> None:
    rng = np.random.default_rng(11)
    runs, looks, batch = 4000, 200, 50
    # running sums of N(0, 1) observations: the estimate is the mean, variance 1 / n
    n = batch * np.arange(1, looks + 1)
    means = np.cumsum(rng.normal(0.0, math.sqrt(batch), (runs, looks)), axis=1) / n
    sequential = always_valid_p(means, 1.0 / n, 0.1)
    naive = stats.norm.sf(means * np.sqrt(n))
    sequential_rate = float(np.mean((running_min(sequential) < 0.05).any(axis=1)))
    naive_rate = float(np.mean((naive < 0.05).any(axis=1)))
    assert sequential_rate <= 0.05
    assert naive_rate > 0.25  # the problem the sequential test solves


def test_n_for_power_gives_the_power_it_promises() -> None:
    tau, alpha = 0.1, 0.05
    n = n_for_power(2.0, tau, tau, alpha=alpha, power=0.8)  # two arms of unit variance
    rng = np.random.default_rng(5)
    diffs = rng.normal(tau, math.sqrt(2.0 / n), 20_000)
    power = float(np.mean(always_valid_p(diffs, 2.0 / n, tau) < alpha))
    assert power == pytest.approx(0.8, abs=0.02)
    assert n_for_power(2.0, 0.0, tau, alpha=alpha) == 0
    assert n_for_power(2.0, 2 * tau, tau, alpha=alpha) < n


def test_p_values_are_at_most_one_and_fall_with_evidence() -> None:
    p = always_valid_p([-1.0, 0.0, 0.01, 0.05, 0.2], 1e-4, 0.05)
    assert p[0] == 1.0 and p[1] == 1.0
    assert np.all(np.diff(p[1:]) <= 0) and p[-1] < 1e-10
    assert running_min([0.5, 0.2, 0.4, 0.1]).tolist() == [0.5, 0.2, 0.2, 0.1]


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, True])
def test_bad_tau_is_rejected(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        check_tau(tau)
