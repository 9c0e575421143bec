"""The latency quantile ratio's one-stream proof (monitors/exceedances.py): its e-value against
scipy's integral of the same mixture, the bins' shift against a reading of each bin's edges,
its coverage at the edge of the null by simulation (equal shapes and crossing ones, one
generation and two), and its power."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, special, stats

from monitors.anytime import DESIGN_SCALES, _concentrations
from monitors.exceedances import INTERVAL_GRID, WEIGHTS, exceedance_log_e, least_log_e
from monitors.quantiles import count_deviations

EDGES = np.geomspace(1.0, 1000.0, 2001)  # inner edges: bin 0 is (-inf, 1], the last (1000, inf)
LOG_RATIO = math.log(EDGES[1] / EDGES[0])
BINS = EDGES.size + 1


def counts_of(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.bincount(np.searchsorted(EDGES, values, side="left"), minlength=BINS)


def mixture_log_e(successes: int, n: int, p0: float, alpha: float, n_opt: float) -> float:
    """The one-sided beta-binomial mixture by numerical integration: for each design, the
    likelihood ratio against p0 under Beta(k p0, k (1 - p0)) truncated to p >= p0."""
    total = 0.0
    k = _concentrations(np.array([alpha]), np.array([n_opt]))[0]
    for weight, concentration in zip(WEIGHTS, k, strict=True):
        a, b = concentration * p0, concentration * (1 - p0)
        mass = stats.beta.sf(p0, a, b)

        def ratio(p: float, a: float = a, b: float = b) -> float:
            log = successes * math.log(p / p0) + (n - successes) * math.log((1 - p) / (1 - p0))
            return math.exp(log + stats.beta.logpdf(p, a, b))

        value, _ = integrate.quad(ratio, p0, 1, limit=200, points=[min(successes / n, 0.999)])
        total += weight * value / mass
    return math.log(total)


@pytest.mark.parametrize(("successes", "n", "p0"), [(0, 400, 0.5), (70, 100, 0.5), (30, 150, 0.1)])
def test_the_e_value_is_scipys_integral_of_the_mixture(successes: int, n: int, p0: float) -> None:
    from monitors.anytime import bernoulli_log_e

    assert DESIGN_SCALES.size == WEIGHTS.size and WEIGHTS.sum() == pytest.approx(1.0)
    found = bernoulli_log_e(successes, n, p0, 0.01, 500, upward=True, weights=WEIGHTS)[0]
    assert found == pytest.approx(mixture_log_e(successes, n, p0, 0.01, 500), rel=1e-5, abs=1e-7)
    if successes == 0:  # the least e-value: every request above h, none the canary's
        assert least_log_e(n, 0.95, p0, 0.01, 500 / 0.05) == pytest.approx(found)


def reference(
    counts_b: npt.NDArray[np.int64],
    counts_c: npt.NDArray[np.int64],
    ratio: float,
    q: float,
    share: float,
    alpha: tuple[float, float],
    n_opt: float,
) -> float:
    """The construction read from each bin's edges: a canary bin (low, high] moved down by
    ratio lies at or below an edge when high / ratio <= edge, may when low / ratio < edge."""
    from monitors.anytime import bernoulli_log_e

    lows = np.concatenate([[-np.inf], EDGES])
    highs = np.concatenate([EDGES, [np.inf]])
    n = int(counts_b.sum() + counts_c.sum())
    down, up = count_deviations(float(n), q, alpha[0] / 2, n_opt, INTERVAL_GRID)
    most, least = [], []
    for edge in EDGES:
        base = int(counts_b[highs <= edge].sum())
        most.append(base + int(counts_c[lows / ratio < edge].sum()))
        least.append(base + int(counts_c[highs / ratio <= edge].sum()))
    below = [j for j in range(EDGES.size) if most[j] < n * q - down]
    above = [j for j in range(EDGES.size) if least[j] > n * q + up]
    if not below or not above:
        return least_log_e(n, q, share, alpha[1], n_opt)
    values = []
    for j in range(below[-1] + 1, above[0] + 1):  # h in (EDGES[j - 1], EDGES[j]]
        canary_above = int(counts_c[lows >= EDGES[j] * ratio].sum())
        all_above = n - least[j - 1]
        design = (1 - q) * n_opt
        values.append(
            bernoulli_log_e(
                canary_above, all_above, share, alpha[1], design, upward=True, weights=WEIGHTS
            )[0]
        )
    return float(min(values))


@pytest.mark.parametrize(("share", "scale", "seed"), [(0.5, 1.3, 1), (0.1, 1.2, 2), (0.3, 1.6, 3)])
def test_the_shifted_counts_are_the_edges_reading(share: float, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 6000
    canary = rng.random(n) < share
    values = rng.lognormal(math.log(20), 0.5, n) * np.where(canary, scale, 1.0)
    counts_b, counts_c = counts_of(values[~canary]), counts_of(values[canary])
    alphas = (0.002, 0.01)
    found = exceedance_log_e(counts_b, counts_c, LOG_RATIO, 1.2, 0.95, share, alphas, 20_000)
    expected = reference(counts_b, counts_c, 1.2, 0.95, share, alphas, 20_000)
    assert found == pytest.approx(expected, rel=1e-9, abs=1e-9)
    cheap = exceedance_log_e(
        counts_b, counts_c, LOG_RATIO, 1.2, 0.95, share, alphas, 20_000, at_most=True
    )
    assert cheap >= found - 1e-12  # an upper bound on it, at one point of the interval


def test_an_interval_open_at_an_end_gives_the_least_e_value() -> None:
    counts_b, counts_c = counts_of(np.full(30, 20.0)), counts_of(np.full(30, 40.0))
    found = exceedance_log_e(counts_b, counts_c, LOG_RATIO, 1.2, 0.95, 0.5, (0.01, 0.01), 1000)
    assert found == least_log_e(60, 0.95, 0.5, 0.01, 1000)
    assert found < 0


def lognormal_sampler(sigma_canary: float, ratio: float) -> tuple[float, float]:
    """The canary's log-normal whose 95% quantile is ``ratio`` times the baseline's (log-normal,
    median 20 ms, sigma 0.5): (mu, sigma)."""
    z = special.ndtri(0.95)
    mu = math.log(20) + z * 0.5 + math.log(ratio) - z * sigma_canary
    return mu, sigma_canary


def proven_at(
    rng: np.random.Generator,
    shares: tuple[float, ...],
    canary: tuple[float, float],
    alpha: float,
    looks: int,
    per_look: int,
) -> int | None:
    """Canary requests when the product of the generations' e-values first reaches 1 / the
    e-value's alpha (the generations one after the other, ``looks`` each of ``per_look``
    canary requests), or None."""
    interval, e_alpha = alpha * 0.1, alpha * 0.9
    earlier, seen = 0.0, 0
    for index, share in enumerate(shares):
        counts = [np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)]
        log_e = 0.0
        for _ in range(looks):
            total = round(per_look / share)
            is_canary = rng.random(total) < share
            values = np.where(
                is_canary,
                rng.lognormal(canary[0], canary[1], total),
                rng.lognormal(math.log(20), 0.5, total),
            )
            counts[0] += counts_of(values[~is_canary])
            counts[1] += counts_of(values[is_canary])
            seen += int(is_canary.sum())
            realised = float(counts[1].sum() / (counts[0].sum() + counts[1].sum()))
            alphas = (interval / 2 ** (index + 1), e_alpha)
            log_e = exceedance_log_e(
                counts[0], counts[1], LOG_RATIO, 1.2, 0.95, realised, alphas, 5000 / share
            )
            if earlier + log_e >= math.log(1 / e_alpha):
                return seen
        earlier += log_e
    return None


def false_fails(
    shares: tuple[float, ...], sigma: float, alpha: float, runs: int, looks: int
) -> int:
    """Runs (of ``runs``) that prove the canary's p95 above 1.2 times the baseline's when it is
    exactly that: the same shape (sigma 0.5) or one crossing the baseline's there."""
    rng = np.random.default_rng(round(sigma * 100) + len(shares) + looks)
    canary = lognormal_sampler(sigma, 1.2)
    return sum(proven_at(rng, shares, canary, alpha, looks, 250) is not None for _ in range(runs))


@pytest.mark.parametrize(
    ("shares", "sigma"), [((0.1,), 0.5), ((0.5,), 0.5), ((0.5,), 0.25), ((0.1, 0.5), 0.8)]
)
def test_false_fails_at_the_edge_of_the_null_stay_within_alpha(
    shares: tuple[float, ...], sigma: float
) -> None:
    """The canary's p95 exactly 1.2 times the baseline's, as allowed (sigma 0.25 narrower, 0.8
    wider than the baseline's 0.5); 12 looks of 250 canary requests per generation: fails in
    at most alpha of the runs."""
    fails = false_fails(shares, sigma, 0.1, 120, 12)
    assert fails <= 0.1 * 120, fails


@pytest.mark.long_coverage
@pytest.mark.parametrize("shares", [(0.1,), (0.5,), (0.1, 0.5)])
@pytest.mark.parametrize("sigma", [0.25, 0.5, 0.8])
def test_false_fails_at_the_edge_of_the_null_many_runs(
    shares: tuple[float, ...], sigma: float
) -> None:
    fails = false_fails(shares, sigma, 0.05, 1000, 20)
    assert fails <= 0.05 * 1000, fails


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_a_canary_half_again_slower_is_proven_within_a_few_thousand(share: float) -> None:
    rng = np.random.default_rng(13)
    canary = lognormal_sampler(0.5, 1.2 * 1.5)
    found = [proven_at(rng, (share,), canary, 0.05, 16, 250) for _ in range(20)]
    assert all(n is not None and n <= 4000 for n in found), found
