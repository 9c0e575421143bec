"""Anytime-valid bounds on a quantile, and on the distance between two distributions.

- :func:`quantile_bounds`: a confidence sequence for the ``q``-quantile of one arm from the
  counts of its values on fixed bins (Howard & Ramdas 2022, "Sequential estimation of quantiles
  with applications to A/B-testing and best-arm identification", Bernoulli 28(3)): below the true
  quantile ``x_q`` values fall with probability exactly ``q``, so the count of values at or below
  ``x_q`` is a Bernoulli(q) sum, bounded at every time by the beta-binomial mixture; a bin edge
  whose count is too low to be at or above ``x_q`` lies below it, and one whose count is too
  high lies above it. The bounds are bin edges: conservative by at most one bin.
- :func:`dkw_radius`: a bound on ``sup_x |F_n(x) - F(x)|`` that holds for every ``n`` at once
  (their time-uniform Dvoretzky-Kiefer-Wolfowitz inequality:
  ``A sqrt((log(1 + log(n / n_min)) + C) / n)``, with ``C`` solved for ``alpha``).
- :func:`ks_distance_bounds`: the Kolmogorov-Smirnov distance between two arms, from their
  empirical distribution functions and each arm's DKW radius.
- :func:`tv_distance_bounds`: the total-variation distance between two arms' category mixes,
  from per-category rate bounds (:func:`monitors.anytime.bernoulli_bounds`), union over the
  categories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from monitors.anytime import Bounds, bernoulli_bounds
from monitors.boundaries import BetaBinomialMixture

DKW_A = 0.85  # Howard & Ramdas' recommended constant (any A > 1/sqrt(2) is valid)


def quantile_bounds(
    counts: npt.ArrayLike, upper_edges: npt.ArrayLike, q: float, alpha: float, n_opt: float
) -> Bounds:
    """Bounds on the ``q``-quantile from counts per bin (bin ``j`` holds values up to
    ``upper_edges[j]``, above the previous edge); each bound at level ``alpha``. A bound
    that the data cannot yet give is 0 (low) or infinity (high)."""
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    cumulative = np.cumsum(np.asarray(counts, dtype=np.float64))
    edges = np.asarray(upper_edges, dtype=np.float64)
    n = float(cumulative[-1]) if cumulative.size else 0.0
    if n <= 0:
        return Bounds(math.nan, 0.0, math.inf)
    v = n * q * (1 - q)
    v_opt = max(n_opt * q * (1 - q), 1e-9)
    down = BetaBinomialMixture(v_opt, alpha, 1 - q, q, one_sided=True).bound(v, alpha)
    up = BetaBinomialMixture(v_opt, alpha, q, 1 - q, one_sided=True).bound(v, alpha)
    target = n * q
    # the largest edge whose count is surely below n q lies below the quantile
    below = np.flatnonzero(cumulative < target - down)
    low = float(edges[below[-1]]) if below.size else 0.0
    # the smallest edge whose count is surely above n q lies above it
    above = np.flatnonzero(cumulative > target + up)
    high = float(edges[above[0]]) if above.size else math.inf
    middle = int(np.searchsorted(cumulative, target, side="left"))
    estimate = float(edges[min(middle, edges.size - 1)])
    return Bounds(estimate, low, high)


@lru_cache(maxsize=64)
def _dkw_constant(alpha: float, a: float = DKW_A) -> float:
    """The C for which the time-uniform DKW bound has error probability ``alpha``: the error
    bound ``4 exp(-g C) (1 + 1 / ((g - 1) log eta))``, ``g = (2/eta)(A - sqrt(2(eta-1)/C))^2``,
    minimised over the epoch ratio ``eta``, solved for C."""

    def error(c: float) -> float:
        best = math.inf
        # eta ranges over (1, eta_max) where the square root term stays below A
        for eta in np.linspace(1.0005, 2 * a * a, 400):
            root = a - math.sqrt(2 * (eta - 1) / c)
            if root <= 0:
                continue
            g = 2 / eta * root * root
            if g <= 1:
                continue
            best = min(best, 4 * math.exp(-g * c) * (1 + 1 / ((g - 1) * math.log(eta))))
        return best

    low, high = 0.5, 5.0
    while error(high) > alpha:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if error(middle) > alpha:
            low = middle
        else:
            high = middle
    return high


def dkw_radius(n: int, alpha: float, n_min: int = 1) -> float:
    """``sup_x |F_n(x) - F(x)|`` stays below this for every ``n >= n_min`` at once, with
    probability at least ``1 - alpha``."""
    if n < n_min or n <= 0:
        return 1.0
    return min(
        1.0, DKW_A * math.sqrt((math.log(1 + math.log(n / n_min)) + _dkw_constant(alpha)) / n)
    )


def ks_distance_bounds(
    baseline: npt.ArrayLike, canary: npt.ArrayLike, alpha: float, n_min: int = 1
) -> Bounds:
    """The KS distance between the arms' distributions, each DKW radius at ``alpha / 2``."""
    b = np.sort(np.asarray(baseline, dtype=np.float64))
    c = np.sort(np.asarray(canary, dtype=np.float64))
    if b.size == 0 or c.size == 0:
        return Bounds(math.nan, 0.0, 1.0)
    grid = np.concatenate([b, c])
    distance = float(
        np.max(
            np.abs(
                np.searchsorted(b, grid, side="right") / b.size
                - np.searchsorted(c, grid, side="right") / c.size
            )
        )
    )
    radius = dkw_radius(b.size, alpha / 2, n_min) + dkw_radius(c.size, alpha / 2, n_min)
    return Bounds(distance, max(0.0, distance - radius), min(1.0, distance + radius))


def tv_distance_bounds(
    baseline_counts: Sequence[int], canary_counts: Sequence[int], alpha: float, n_opt: float
) -> Bounds:
    """The total-variation distance between two category mixes (counts per category, in the
    same order), from every category's rate bounds in each arm at ``alpha / (4 k)``."""
    k = len(baseline_counts)
    n_b, n_c = sum(baseline_counts), sum(canary_counts)
    if k == 0 or n_b == 0 or n_c == 0:
        return Bounds(math.nan, 0.0, 1.0)
    each = alpha / (4 * k)
    estimate, low, high = 0.0, 0.0, 0.0
    for count_b, count_c in zip(baseline_counts, canary_counts, strict=True):
        rate_b = bernoulli_bounds(count_b, n_b, each, n_opt)
        rate_c = bernoulli_bounds(count_c, n_c, each, n_opt)
        estimate += abs(rate_c.estimate - rate_b.estimate)
        gap_low, gap_high = rate_c.low - rate_b.high, rate_c.high - rate_b.low
        low += max(0.0, gap_low, -gap_high)
        high += max(abs(gap_low), abs(gap_high))
    return Bounds(estimate / 2, min(1.0, low / 2), min(1.0, high / 2))
