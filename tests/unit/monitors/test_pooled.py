"""The difference's lower bound from the ratio and the pooled rate: its formula on one plan
generation, and its coverage by simulation (one generation and two) at the edge of the null."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitors.anytime import bernoulli_bounds
from monitors.pooled import PooledGroup, difference_low


@pytest.mark.parametrize(("share", "theta"), [(0.1, 2.0), (0.5, 3.0), (0.3, 1.2)])
def test_one_generation_is_the_pooled_rates_bound_mapped_through_the_ratio(
    share: float, theta: float
) -> None:
    events, requests, alpha, design = 240, 100_000, 0.01, 50_000
    pooled_low = bernoulli_bounds(events, requests, alpha, design).low
    expected = pooled_low * (theta - 1) / (1 + share * (theta - 1))
    found = difference_low([PooledGroup(share, requests, events)], theta, alpha, design)
    assert found == pytest.approx(expected, rel=1e-4)


def test_no_bound_without_a_ratio_above_one_or_requests() -> None:
    group = PooledGroup(0.5, 1000, 5)
    assert difference_low([group], 1.0, 0.05, 1000) == -math.inf
    assert difference_low([group], math.inf, 0.05, 1000) == -math.inf
    assert difference_low([PooledGroup(0.5, 0, 0)], 2.0, 0.05, 1000) == -math.inf
    assert difference_low([PooledGroup(0.5, 1000, 0)], 2.0, 0.05, 1000) == 0.0
    more = difference_low([PooledGroup(0.5, 100_000, 400)], 2.0, 0.05, 10_000)
    less = difference_low([PooledGroup(0.5, 100_000, 400)], 1.5, 0.05, 10_000)
    assert 0 < less < more  # a larger proven ratio proves a larger difference


@pytest.mark.parametrize("shares", [(0.5,), (0.1, 0.5)])
def test_the_bound_stays_below_the_true_difference_at_every_look(shares: tuple[float, ...]) -> None:
    """Baseline 0.2%, canary 0.3% (ratio 1.5, difference 0.1 point), the true ratio given:
    looks every 2,000 requests to 40,000 (split over the generations); the bound may cross
    the truth at some look in at most alpha of the runs."""
    rng = np.random.default_rng(7)
    p_b, theta, alpha, runs = 0.002, 1.5, 0.1, 300
    truth = p_b * (theta - 1)
    per_generation = 40_000 // len(shares)
    crossed = 0
    for _ in range(runs):
        counts: list[list[int]] = []
        over = False
        for share in shares:
            rate = p_b * (1 + share * (theta - 1))
            errors = rng.random(per_generation) < rate
            cumulative = np.cumsum(errors)
            for end in range(2000, per_generation + 1, 2000):
                groups = [PooledGroup(s, r, e) for s, r, e in counts]
                groups.append(PooledGroup(share, end, int(cumulative[end - 1])))
                if difference_low(groups, theta, alpha, 20_000) > truth:
                    over = True
                    break
            if over:
                break
            counts.append([share, per_generation, int(cumulative[-1])])  # type: ignore[list-item]
        crossed += over
    assert crossed / runs <= alpha
