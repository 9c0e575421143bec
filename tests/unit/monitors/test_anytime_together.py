"""A look's searches run together give each search's result alone, bit for bit; the bisections
that infer most answers give the bisection's result; integer counts give the float counts'
quantile bounds. (The speed of a look must not move a bound.)"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest

from monitors.anytime import (
    VARIANCE_GRID,
    ArmBatch,
    EventSplit,
    MeanDifference,
    RateSearch,
    RatioSearch,
    bernoulli_bounds_many,
    event_probability,
    rate_ratio_bounds,
    rate_ratio_estimate,
    search_together,
)
from monitors.boundaries import (
    BISECTIONS,
    BetaBinomialMixture,
    GammaExponentialMixture,
    LogE,
    NormalMixture,
    WeightedMixture,
)
from monitors.quantiles import (
    _search_sorted,
    quantile_bounds,
    tv_distance_bounds,
    tv_distance_from,
    tv_distance_search,
)


def _steps(rng: np.random.Generator) -> list[EventSplit]:
    shares = rng.choice([0.1, 0.2, 0.5, 0.9], int(rng.integers(1, 4)))
    return [
        EventSplit(float(share), int(rng.integers(0, 60)), int(rng.integers(0, 300)))
        for share in shares
    ]


@pytest.mark.parametrize("seed", range(40))
def test_searches_together_are_each_search_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = [int(rng.integers(0, 60_000)), int(rng.integers(0, 8_000))]
    errors = [int(rng.binomial(k, float(rng.choice([0.001, 0.01, 0.3])))) for k in n]
    if seed % 7 == 0:
        errors[1] = n[1]  # every canary request failed
    alpha = float(rng.choice([0.0125, 0.05 / 3]))
    steps = _steps(rng) if seed % 11 else [EventSplit(0.1, 4, 0)]
    table = [[int(v) for v in rng.integers(0, 3_000, 3)], [int(v) for v in rng.integers(0, 500, 3)]]
    arms = RateSearch(errors, n, alpha / 4, [45_000.0, 5_000.0])
    ratio = RatioSearch(steps, alpha, 60, alpha_high=alpha / 2)
    tv = tv_distance_search(table[0], table[1], alpha, (45_000.0, 5_000.0))
    assert tv is not None
    search_together([arms, ratio, tv, RateSearch([], [], alpha, 1.0)])

    alone = bernoulli_bounds_many(errors, n, alpha / 4, [45_000.0, 5_000.0])
    for together, by_itself in zip(arms.result(), alone, strict=True):
        np.testing.assert_array_equal(together, by_itself)
    assert ratio.result() == rate_ratio_bounds(steps, alpha, 60, alpha_high=alpha / 2)
    assert tv_distance_from(tv) == tv_distance_bounds(
        table[0], table[1], alpha, (45_000.0, 5_000.0)
    )


def _plain_bisection(mixture: LogE, v: float, alpha: float, s_max: float) -> float:
    """The boundary's bisection evaluating every midpoint (as it was written first)."""
    value = mixture.log_e
    threshold = math.log(1 / alpha)
    low, high = 0.0, max(s_max, 1e-12)
    for _ in range(200):
        if value(high, v) >= threshold or high >= s_max:
            break
        high *= 2
    if value(high, v) < threshold:
        return math.inf
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        if value(middle, v) >= threshold:
            high = middle
        else:
            low = middle
    return high


@pytest.mark.parametrize("v", [0.0, 3.0, 250.0, 4_000.0, 90_000.0, 3e6, 1e9])
@pytest.mark.parametrize("alpha", [0.05, 0.0125, 0.001])
def test_a_bound_infers_no_answer_the_plain_bisection_would_read_differently(
    v: float, alpha: float
) -> None:
    mixtures: list[NormalMixture | GammaExponentialMixture | BetaBinomialMixture] = [
        NormalMixture(1_000.0, alpha, one_sided=True),
        GammaExponentialMixture(20_000.0, alpha, 22.0),
        GammaExponentialMixture(50.0, alpha, 0.5),
        GammaExponentialMixture(1e7, alpha, 0.05),
        BetaBinomialMixture(500.0, alpha, 0.02, 0.98),
    ]
    for mixture in mixtures:
        assert mixture.bound(v, alpha) == _plain_bisection(mixture, v, alpha, _s_max(mixture, v))
    weighted = WeightedMixture(
        [(0.7, mixtures[1]), (0.15, GammaExponentialMixture(2_000.0, alpha, 22.0)),
         (0.15, GammaExponentialMixture(200.0, alpha, 22.0))]
    )  # fmt: skip
    s_max = math.sqrt(v + 20_000.0) * 10 + 22.0 * 50
    assert weighted.bound(v, alpha, s_max) == _plain_bisection(weighted, v, alpha, s_max)


def _s_max(mixture: LogE, v: float) -> float:
    if isinstance(mixture, NormalMixture):
        return math.sqrt(v + mixture.rho) * 10
    if isinstance(mixture, GammaExponentialMixture):
        return math.sqrt(v + mixture.rho) * 10 + mixture.c * 50
    assert isinstance(mixture, BetaBinomialMixture)
    return v / mixture.g


@pytest.mark.parametrize("seed", range(10))
def test_mean_difference_bounds_are_the_plain_bisections(seed: int) -> None:
    rng = np.random.default_rng(seed)
    share = float(rng.choice([0.1, 0.5]))
    stream = MeanDifference(0.0, 1.0, share)
    for _ in range(int(rng.integers(1, 30))):
        c, b = int(rng.integers(0, 300)), int(rng.integers(0, 3_000))
        p_c, p_b = float(rng.random()), float(rng.random())
        stream.add(share, ArmBatch(c, c * p_c, c * p_c), ArmBatch(b, b * p_b, b * p_b))
    alpha, v_opt = 0.05 / 3, float(10 ** rng.uniform(3, 6))
    bounds = stream.bounds(alpha, v_opt)
    # the boundary at the variance rounded up to its grid point: the plain bisection there,
    # and never narrower than the one at the variance itself
    index = math.ceil(math.log(stream.variance) / math.log(VARIANCE_GRID) - 1e-9)
    on_grid = VARIANCE_GRID**index
    assert stream.variance * (1 - 1e-9) <= on_grid <= stream.variance * VARIANCE_GRID
    mixture = stream._mixture(alpha, v_opt)
    radius = _plain_bisection(
        mixture, on_grid, alpha, math.sqrt(on_grid + v_opt) * 10 + stream.scale * 50
    )
    exact = _plain_bisection(
        mixture,
        stream.variance,
        alpha,
        math.sqrt(stream.variance + v_opt) * 10 + stream.scale * 50,
    )
    assert exact <= radius <= exact * 1.01
    estimate = stream.sum / stream.count
    assert bounds.low == max(-1.0, estimate - radius / stream.count)
    assert bounds.high == min(1.0, estimate + radius / stream.count)


def _plain_estimate(steps: list[EventSplit], max_ratio: float = 1e4) -> float:
    seen = sum(s.canary_events for s in steps)
    log_bound = math.log(max_ratio)
    low, high = -log_bound, log_bound
    for _ in range(60):
        middle = (low + high) / 2
        theta = math.exp(middle)
        expected = sum(
            (s.canary_events + s.baseline_events) * event_probability(theta, s.canary_share)
            for s in steps
        )
        if expected >= seen:
            high = middle
        else:
            low = middle
    return math.exp((low + high) / 2)


@pytest.mark.parametrize("seed", range(200))
def test_the_rate_ratio_estimate_is_the_plain_bisection(seed: int) -> None:
    steps = [s for s in _steps(np.random.default_rng(seed)) if s.canary_events + s.baseline_events]
    seen = sum(s.canary_events for s in steps)
    if not steps or seen in (0, sum(s.canary_events + s.baseline_events for s in steps)):
        return
    assert rate_ratio_estimate(steps) == _plain_estimate(steps)


@pytest.mark.parametrize(
    "steps",
    [
        [EventSplit(0.99, 50_000, 3)],
        [EventSplit(0.01, 1, 40_000)],
        [EventSplit(0.5, 999_999, 1), EventSplit(0.1, 7, 70)],
        [EventSplit(0.999, 100, 100), EventSplit(0.001, 100, 100), EventSplit(0.3, 1, 0)],
    ],
)
def test_the_rate_ratio_estimate_is_the_plain_bisection_at_the_extremes(
    steps: list[EventSplit],
) -> None:
    assert rate_ratio_estimate(steps) == _plain_estimate(steps)


def test_integer_counts_give_the_float_counts_quantile_bounds() -> None:
    rng = np.random.default_rng(4)
    edges = np.geomspace(1e-3, 1e6, 19_199)
    for n in (1, 7, 300, 20_000, 400_000):
        counts = np.bincount(rng.integers(8_000, 10_500, n), minlength=19_199)
        for q in (0.5, 0.95, 0.999):
            whole = quantile_bounds(counts, edges, q, 0.0125, 5_000)
            assert whole == quantile_bounds(counts.astype(np.float64), edges, q, 0.0125, 5_000)


def test_searching_integer_totals_is_searching_them_as_floats() -> None:
    totals = np.cumsum([0, 3, 0, 0, 5, 1, 0, 9])
    floats = totals.astype(np.float64)
    values = [-math.inf, -1.0, 0.0, 0.5, 2.999, 3.0, 3.0001, 8.5, 9.0, 17.0, 18.0, 18.5, math.inf]
    sides: tuple[Literal["left", "right"], ...] = ("left", "right")
    for value in [*values, math.nan]:
        for side in sides:
            expected = int(np.searchsorted(floats, value, side=side))
            assert _search_sorted(totals, value, side) == expected, (value, side)
