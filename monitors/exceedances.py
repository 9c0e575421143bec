"""A one-stream proof that the canary's quantile latency is above ``ratio`` times the baseline's.

Each arm's own quantile bounds (:func:`monitors.quantiles.quantile_bounds`) prove
``q_c > ratio * q_b`` only once the canary's lower bound clears the baseline's upper bound: the
two widths add, where a fixed-horizon test adds variances. Under a randomised split (each request
is the canary's with probability ``s``, whatever its latency would be) one stream of every request
avoids that:

- Divide the canary's latencies by ``ratio``. Every request is then a draw from one mixture
  ``H = s G + (1 - s) F`` (``G``: the canary's latencies over ``ratio``, ``F``: the baseline's),
  independent from request to request. Let ``h`` be the ``q``-quantile of ``H``. It lies between
  the ``q``-quantiles of ``G`` and ``F``. So if ``q_c <= ratio * q_b`` (the null), ``G(h) >= q``
  and ``F(h) <= q``: above ``h`` the canary exceeds no more often than the baseline.
- Among the requests above ``h`` (a fixed, unknown point), the arms are independent draws, the
  canary with probability ``pi = s (1 - G(h)) / (1 - q)``, at most ``s`` under the null. The
  one-sided beta-binomial mixture (:func:`monitors.anytime.bernoulli_log_e`) of the canary's count
  among them at ``p0 = s`` is an e-process: it reaches ``1 / alpha_t`` with probability at most
  ``alpha_t``, at any time (the count of a rate below ``s`` is pathwise at most the count at
  ``s``, and the e-value grows with the count and falls with every request that is not the
  canary's).
- ``h`` is unknown, but ``H``'s own quantile bounds (Howard & Ramdas 2022, on every request of
  both arms) give ``h_low < h <= h_high`` at every time, at ``alpha_h``. The fail is proven when
  the e-value clears ``1 / alpha_t`` at every point of ``[h_low, h_high]``, each point with the
  canary's count rounded down and the requests above it rounded up (the bins' edges): wherever
  ``h`` is, its e-value cleared too. Error: at most ``alpha_h + alpha_t``.

Under the null with equal shapes (a canary merely as slow as allowed) the canary's share among the
exceedances is ``s``; a canary ``ratio * (1 + e)`` slower moves it by about ``(1 - s)`` times the
difference of the arms' exceedance rates at ``h``. The test conditions on the exceedances'
count, so its variance is the split's alone: about a fixed-horizon test's requests, where each
arm's bound needs up to twice them at an even split. The interval of ``h`` costs little: it
narrows with all requests (at a 10% split, ten times the canary's), and across it the canary's
count moves only by the requests in between.

Latencies come as counts on log-spaced bins, shared by the arms; dividing by ``ratio`` moves them
by ``log(ratio) / log(bin ratio)`` bins, rounded each way where it is conservative to.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors.anytime import bernoulli_log_e
from monitors.quantiles import count_deviations

Counts = npt.NDArray[np.int64]
# the interval's deviations are computed for the requests rounded up to a point of this
# geometric grid (a little wider than at the exact count; computed once per point)
INTERVAL_GRID = 1.05
# the e-value's mixture over the designs n_opt x (1, 0.1, 0.01): most on the design, which it is
# tuned for (a small effect, found late); the rest keeps a large one quick to prove
WEIGHTS = np.array([0.9, 0.05, 0.05])


def _shifted(cumulative: Counts, bins: int) -> Counts:
    """``cumulative`` read ``bins`` edges higher (the total past the last edge)."""
    if bins <= 0:
        return cumulative
    out = np.empty_like(cumulative)
    size = cumulative.size
    kept = max(0, size - bins)
    out[:kept] = cumulative[bins:]
    out[kept:] = cumulative[-1]
    return out


def exceedance_log_e(
    counts_baseline: Counts,
    counts_canary: Counts,
    log_bin_ratio: float,
    ratio: float,
    q: float,
    share: float,
    alpha: tuple[float, float],
    n_opt: float,
    *,
    occupied: tuple[int, int] | None = None,
    at_most: bool = False,
) -> float:
    """A lower bound on one plan generation's log e-value against "the canary's ``q``-quantile
    latency is at most ``ratio`` times the baseline's", wherever the mixture's quantile ``h`` is
    in its interval. ``alpha`` is the interval's (both sides together) and the e-value's
    (whose mixture it tunes); e-values of successive generations multiply.

    The arms' counts are on the same log-spaced bins (each edge ``bin_ratio`` times the one
    before; the first bin open below, the last above); ``occupied`` is the first and last bin
    holding any (found when not given: the work is on those bins alone). ``share`` is the
    canary's probability of a request; ``n_opt`` the requests of both arms the bounds are tuned
    for, fixed in advance. While the interval is still open at an end, the bound is the e-value
    of every request above ``h`` being the baseline's, the least it can be.

    With ``at_most``, an upper bound on that lower bound instead, at a fraction of the cost (the
    e-value at the one point of the interval where the canary's excess over its share is the
    fewest standard deviations): enough to tell that it has not reached a threshold."""
    if not (0 < share < 1 and 0 < q < 1 and ratio > 0 and log_bin_ratio > 0):
        raise ValueError(f"need 0 < share, q < 1 and positive ratios, got {share}, {q}, {ratio}")
    alpha_h, alpha_t = alpha
    if counts_baseline.size == 0 or counts_canary.size != counts_baseline.size:
        raise ValueError("the arms' counts must be on the same bins")
    total_b, total_c = int(counts_baseline.sum()), int(counts_canary.sum())
    n = total_b + total_c
    if n == 0:
        return 0.0
    exact = math.log(ratio) / log_bin_ratio
    # the canary's values over ratio, counted at or below each baseline edge: at least (edge
    # moved by the floor of the shift) and at most (by its ceiling)
    floor_shift, ceil_shift = math.floor(exact + 1e-9), math.ceil(exact - 1e-9)
    if occupied is None:
        held = np.flatnonzero(counts_baseline + counts_canary)
        occupied = int(held[0]), int(held[-1])
    # below `first` nothing is counted, even moved down by the shift; past `last`, everything
    first = occupied[0] - ceil_shift - 2
    if first < 0:  # values in the lowest bins: the interval is not closed below
        return least_log_e(n, q, share, alpha_t, n_opt)
    last = occupied[1] + 1
    cumulative_b = np.cumsum(counts_baseline[first:last])
    cumulative_c = np.cumsum(counts_canary[first:last])
    canary_most = _shifted(cumulative_c, ceil_shift)
    most_below = cumulative_b + canary_most  # requests at or below each edge, at most
    least_below = cumulative_b + _shifted(cumulative_c, floor_shift)
    down, up = count_deviations(float(n), q, alpha_h / 2, n_opt, INTERVAL_GRID)
    target = n * q
    # the last edge surely below h, the first surely at or above it
    below = int(np.searchsorted(most_below, target - down, side="left")) - 1
    above = int(np.searchsorted(least_below, target + up, side="right"))
    if below < 0 or above >= most_below.size:
        return least_log_e(n, q, share, alpha_t, n_opt)
    # h in (edge[j - 1], edge[j]] for some j in below + 1 .. above: the canary's values above
    # ratio * h are at least those above edge[j + ceil]; the requests above h at most those
    # above edge[j - 1] (canary: edge[j - 1 + floor])
    j = np.arange(below + 1, above + 1)
    canary_above = total_c - canary_most[j]
    all_above = n - least_below[j - 1]
    # both fall with j, and the e-value falls with the requests above h: of the points with one
    # count of the canary's, the first is the least
    changed = np.ones(j.size, dtype=bool)
    changed[1:] = np.diff(canary_above) != 0
    canary_above, all_above = canary_above[changed], all_above[changed]
    if at_most:
        excess = (canary_above - share * all_above) / np.sqrt(np.maximum(all_above, 1))
        least = int(np.argmin(excess))
        canary_above, all_above = canary_above[least : least + 1], all_above[least : least + 1]
    design = (1 - q) * n_opt
    log_e = bernoulli_log_e(
        canary_above, all_above, share, alpha_t, design, upward=True, weights=WEIGHTS
    )
    return float(np.min(log_e))


def least_log_e(n: int, q: float, share: float, alpha_t: float, n_opt: float) -> float:
    """The least :func:`exceedance_log_e` can be after ``n`` requests: all of them above ``h``
    and none the canary's."""
    design = (1 - q) * n_opt
    return float(bernoulli_log_e(0, n, share, alpha_t, design, upward=True, weights=WEIGHTS)[0])
