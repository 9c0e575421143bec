"""A lower bound on the difference of two arms' event rates from their ratio and the pooled rate.

When every request goes to the canary with a known probability ``s`` (a randomised split), a
request errs with probability ``m = s p_c + (1 - s) p_b = p_b (1 + s (theta - 1))`` whatever its
arm, ``theta = p_c / p_b``: the pooled errors of a plan generation are a Bernoulli(m) sum, one
stream with every request in it. Given ``theta >= theta_low > 1`` (the ratio's confidence
sequence, :func:`monitors.anytime.rate_ratio_bounds`, which is also one stream: the arm of each
error) the difference is ``d = p_b (theta - 1)``, and a generation's rate for a difference ``d``
is ``m_g = d (1 / (theta - 1) + s_g)``, largest at ``theta_low``. A ``d`` whose rates the
pooled counts reject upward (the beta-binomial e-values of
:func:`monitors.anytime.bernoulli_log_e`, multiplied across generations, at least
``1 / alpha``) is rejected at every ``theta >= theta_low`` (each e-value falls as its rate
rises), so the largest rejected ``d`` is a lower bound of the difference, valid at
``alpha`` plus the ratio's level (a union bound).

Where the two arms' own bounds add two widths (``rate_c.low - rate_b.high``), this adds one
stream's: at an even split it proves a rare error rate's rise with about half the requests.
The premise is the randomisation: requests of one user that all go to one arm (sticky keys)
break the independence it rests on, as they do the ratio's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitors.anytime import BernoulliRows, solve


@dataclass(frozen=True)
class PooledGroup:
    """One plan generation: the canary's share of requests, and both arms' requests and
    events together."""

    share: float
    requests: int
    events: int


def difference_low(
    groups: Sequence[PooledGroup], theta_low: float, alpha: float, n_opt: float
) -> float:
    """The lower bound of ``p_c - p_b`` given ``theta >= theta_low``, the pooled part at
    ``alpha``; ``-inf`` when it gives none (``theta_low <= 1`` or no requests)."""
    used = [g for g in groups if g.requests > 0 and 0 < g.share < 1]
    if theta_low <= 1 or not used or not math.isfinite(theta_low):
        return -math.inf
    slope = np.array([1 / (theta_low - 1) + g.share for g in used])  # m_g = d * slope_g
    rows = BernoulliRows(
        [g.events for g in used],
        [g.requests for g in used],
        np.full(len(used), alpha),
        np.full(len(used), n_opt),
        np.full(len(used), True),
    )
    threshold = math.log(1 / alpha)
    ceiling = float(np.log(1 / slope.max()))  # every rate at most 1

    def margin(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rates = np.minimum(math.exp(float(x[0])) * slope, 1 - 1e-12)
        return np.array([float(rows.log_e(rates).sum()) - threshold])

    events = sum(g.events for g in used)
    requests = sum(g.requests for g in used)
    if events == 0:
        return 0.0
    estimate = math.log(
        events / requests / float(np.average(slope, weights=[g.requests for g in used]))
    )
    floor = math.log(1e-12)
    found = solve(
        margin,
        np.array([min(estimate - 1.0, ceiling)]),
        np.array([0.25]),
        np.array([floor]),
        np.array([ceiling]),
    )
    return 0.0 if found[0] <= floor else math.exp(float(found[0]))


__all__ = ["PooledGroup", "difference_low"]
