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
from typing import Literal

import numpy as np
import numpy.typing as npt

from monitors.anytime import Bounds, RateSearch, bernoulli_log_e, search_together, solve

DKW_A = 0.85  # Howard & Ramdas' recommended constant (any A > 1/sqrt(2) is valid)


def quantile_bounds(
    counts: npt.ArrayLike, upper_edges: npt.ArrayLike, q: float, alpha: float, n_opt: float
) -> Bounds:
    """Bounds on the ``q``-quantile from counts per bin (bin ``j`` holds values up to
    ``upper_edges[j]``, above the previous edge); each bound at level ``alpha``. A bound
    that the data cannot yet give is 0 (low) or infinity (high)."""
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    given = np.asarray(counts)
    if given.dtype.kind in "iub":  # whole counts: summed exactly as integers
        return quantile_bounds_cumulative(np.cumsum(given), upper_edges, q, alpha, n_opt)
    return quantile_bounds_cumulative(
        np.cumsum(np.asarray(given, dtype=np.float64)), upper_edges, q, alpha, n_opt
    )


def quantile_bounds_cumulative(
    cumulative: npt.NDArray[np.int64] | npt.NDArray[np.float64],
    upper_edges: npt.ArrayLike,
    q: float,
    alpha: float,
    n_opt: float,
) -> Bounds:
    """:func:`quantile_bounds` from the running totals of the counts (``np.cumsum`` of them,
    integers or floats), for a caller that needs them too."""
    edges = np.asarray(upper_edges, dtype=np.float64)
    n = float(cumulative[-1]) if cumulative.size else 0.0
    if n <= 0:
        return Bounds(math.nan, 0.0, math.inf)
    down, up = count_deviations(n, q, alpha, n_opt)
    target = n * q
    # the largest edge whose count is surely below n q lies below the quantile (the cumulative
    # counts are sorted, so a binary search finds it)
    below = _search_sorted(cumulative, target - down, "left") - 1
    low = float(edges[below]) if below >= 0 else 0.0
    # the smallest edge whose count is surely above n q lies above it
    above = _search_sorted(cumulative, target + up, "right")
    high = float(edges[above]) if above < edges.size else math.inf
    middle = _search_sorted(cumulative, target, "left")
    estimate = float(edges[min(middle, edges.size - 1)])
    return Bounds(estimate, low, high)


def _search_sorted(
    cumulative: npt.NDArray[np.int64] | npt.NDArray[np.float64],
    value: float,
    side: Literal["left", "right"],
) -> int:
    """``np.searchsorted(cumulative, value, side)`` as it is on the counts as floats (exact:
    they are whole numbers below 2**53), without converting integer counts: the first count at
    least (``left``) or above (``right``) ``value`` is the first at least its ceiling (or above
    its floor)."""
    if cumulative.dtype.kind not in "iu":
        return int(np.searchsorted(cumulative, value, side=side))
    if math.isnan(value) or value > cumulative[-1]:  # nan sorts last
        return int(cumulative.size)
    if value < cumulative[0]:
        return 0
    whole = math.ceil(value) if side == "left" else math.floor(value)
    return int(np.searchsorted(cumulative, whole, side=side))


GRID_RATIO = 1.01  # deviations are computed for n rounded up to a point of this geometric grid


def count_deviations(
    n: float, q: float, alpha: float, n_opt: float, grid: float = GRID_RATIO
) -> tuple[float, float]:
    """How far below and above ``n q`` the count of ``n`` Bernoulli(q) values may stray at
    every ``n`` at once (each at ``alpha``, the beta-binomial mixtures of
    :func:`monitors.anytime.bernoulli_log_e`). They depend on ``n`` alone, not on the data,
    and grow with it: computed at ``n`` rounded up to a 1% geometric grid and cached, so that
    a look costs a dictionary lookup and the bounds stay conservative (a coarser ``grid``: fewer
    to compute, a little wider)."""
    index = math.ceil(math.log(max(n, 1.0)) / math.log(grid) - 1e-9)
    return _count_deviations(index, q, alpha, n_opt, grid)


@lru_cache(maxsize=4096)
def _count_deviations(
    index: int, q: float, alpha: float, n_opt: float, grid: float
) -> tuple[float, float]:
    n = grid**index
    threshold = math.log(1 / alpha)
    centre = n * q
    spread = math.sqrt(n * q * (1 - q)) + 1

    def margin(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # row 0: the count at n q - d, tested downward; row 1: at n q + d, tested upward
        counts = np.array([centre + y[0], centre - y[1]])
        log_e = bernoulli_log_e(counts, n, q, alpha, n_opt, upward=np.array([False, True]))
        return log_e - threshold

    width = math.sqrt(2 * threshold + 2) * spread
    found = solve(
        margin,
        np.full(2, -width),
        np.array([0.25 * spread, 0.25 * spread]),
        np.array([-centre, -(n - centre)]),
        np.array([0.0, 0.0]),
    )
    down = -found[0] if found[0] > -centre else math.inf
    up = -found[1] if found[1] > -(n - centre) else math.inf
    return down, up


@lru_cache(maxsize=1024)
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


def ks_distance_bounds_binned(
    baseline_counts: npt.ArrayLike, canary_counts: npt.ArrayLike, alpha: float, n_min: int = 1
) -> Bounds:
    """The KS distance between two arms from their counts on shared bins (every value, however
    many): the empirical distribution functions at the bin edges, each arm's DKW radius at
    ``alpha / 2`` for its full count. The lower bound is the edges' distance less the radii
    (the distance at the edges is at most the distance); the upper bound adds to the radii the
    most the distance can reach inside a bin, ``max(F_c(right) - F_b(left), F_b(right) -
    F_c(left))``, so it is wider than the exact one by at most the largest bin's mass."""
    b = np.asarray(baseline_counts, dtype=np.float64)
    c = np.asarray(canary_counts, dtype=np.float64)
    n_b, n_c = float(b.sum()), float(c.sum())
    if n_b <= 0 or n_c <= 0:
        return Bounds(math.nan, 0.0, 1.0)
    f_b = np.concatenate([[0.0], np.cumsum(b) / n_b])
    f_c = np.concatenate([[0.0], np.cumsum(c) / n_c])
    at_edges = float(np.max(np.abs(f_c - f_b)))
    inside = float(np.max(np.maximum(f_c[1:] - f_b[:-1], f_b[1:] - f_c[:-1])))
    radius = dkw_radius(int(n_b), alpha / 2, n_min) + dkw_radius(int(n_c), alpha / 2, n_min)
    return Bounds(at_edges, max(0.0, at_edges - radius), min(1.0, max(inside, at_edges) + radius))


def tv_distance_bounds(
    baseline_counts: Sequence[int],
    canary_counts: Sequence[int],
    alpha: float,
    n_opt: float | tuple[float, float],
) -> Bounds:
    """The total-variation distance between two category mixes (counts per category, in the
    same order), from every category's rate bounds in each arm at ``alpha / (4 k)``; ``n_opt``
    is the design of both arms, or the baseline's and the canary's."""
    search = tv_distance_search(baseline_counts, canary_counts, alpha, n_opt)
    if search is None:
        return Bounds(math.nan, 0.0, 1.0)
    search_together([search])
    return tv_distance_from(search)


def tv_distance_search(
    baseline_counts: Sequence[int],
    canary_counts: Sequence[int],
    alpha: float,
    n_opt: float | tuple[float, float],
) -> RateSearch | None:
    """The rate bounds :func:`tv_distance_bounds` needs, as a search to run with others
    (:func:`monitors.anytime.search_together`), then :func:`tv_distance_from`; None when an arm
    has no counts (the distance is then anywhere in [0, 1])."""
    k = len(baseline_counts)
    n_b, n_c = sum(baseline_counts), sum(canary_counts)
    if k == 0 or n_b == 0 or n_c == 0:
        return None
    each = alpha / (4 * k)
    designs = (n_opt, n_opt) if isinstance(n_opt, (int, float)) else n_opt
    return RateSearch(
        [*baseline_counts, *canary_counts],
        [n_b] * k + [n_c] * k,
        each,
        [designs[0]] * k + [designs[1]] * k,
    )


def tv_distance_from(search: RateSearch) -> Bounds:
    """The total-variation bounds from the run search of :func:`tv_distance_search`."""
    rates, lows, highs = search.result()
    k = rates.size // 2
    estimate = float(np.sum(np.abs(rates[k:] - rates[:k])))
    gap_low, gap_high = lows[k:] - highs[:k], highs[k:] - lows[:k]
    low = float(np.sum(np.maximum(0.0, np.maximum(gap_low, -gap_high))))
    high = float(np.sum(np.maximum(np.abs(gap_low), np.abs(gap_high))))
    return Bounds(estimate / 2, min(1.0, low / 2), min(1.0, high / 2))
