"""One-sided two-proportion z-test with a margin, shared by the error-rate and accuracy gates.

Tests H0: rate_canary - rate_baseline <= margin against H1: > margin, where a "rate" is the share
of *bad* outcomes (errors, wrong predictions). With ``margin == 0`` the standard error is pooled
(then z**2 equals the uncorrected chi-square statistic of the 2x2 table); with ``margin > 0`` it
is unpooled, since H0 no longer says the rates are equal. A zero standard error (every outcome
in both arms the same) gives z = +inf / -inf / 0 by the sign of ``diff - margin``, so p is 0, 1
or 0.5 without dividing by zero. Both arms must be non-empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitors import _normal as normal


@dataclass(frozen=True)
class ProportionZ:
    """Numbers of one two-proportion z-test."""

    baseline_rate: float
    canary_rate: float
    diff: float
    se: float
    z: float
    p_value: float
    upper_bound: float  # one-sided (1 - alpha) upper confidence bound of diff (unpooled SE)


def two_proportion_z(
    baseline_bad: int, baseline_n: int, canary_bad: int, canary_n: int, margin: float, alpha: float
) -> ProportionZ:
    """Run the test; counts must satisfy 0 <= bad <= n and n >= 1 in each arm."""
    baseline_rate = baseline_bad / baseline_n
    canary_rate = canary_bad / canary_n
    diff = canary_rate - baseline_rate
    unpooled_var = (
        baseline_rate * (1.0 - baseline_rate) / baseline_n
        + canary_rate * (1.0 - canary_rate) / canary_n
    )
    if margin == 0.0:
        pooled = (baseline_bad + canary_bad) / (baseline_n + canary_n)
        var = pooled * (1.0 - pooled) * (1.0 / baseline_n + 1.0 / canary_n)
    else:
        var = unpooled_var
    se = math.sqrt(max(var, 0.0))
    excess = diff - margin
    if se > 0.0:
        z = excess / se
    elif excess == 0.0:
        z = 0.0
    else:
        z = math.copysign(math.inf, excess)
    p_value = float(normal.sf(z))
    upper_bound = diff + float(normal.isf(alpha)) * math.sqrt(max(unpooled_var, 0.0))
    return ProportionZ(
        baseline_rate=baseline_rate,
        canary_rate=canary_rate,
        diff=diff,
        se=se,
        z=z,
        p_value=p_value,
        upper_bound=upper_bound,
    )
