"""Mean shift: a sequential (always-valid) test that the canary's mean output moved.

`mean_shift_test` takes each arm's numeric outputs, `mean_shift_moments` their running moments
(count, mean, sum of squared deviations). The effect size is (canary mean - baseline mean) /
baseline sd; the mSPRT (`monitors.sequential`) mixes over shifts of scale `tau` baseline sds
with the Welch variance, and the two-sided always-valid p-value fails the gate when < alpha,
so the gate may be checked after every batch. Parameters are validated (``ValueError``); fewer
than `min_n` (at least 2) values in an arm gives ``inconclusive``.
"""

from __future__ import annotations

import math

import numpy.typing as npt

from monitors._validate import as_numeric, check_alpha, check_gate, check_min_n
from monitors._verdict import fmt_p, make_result
from monitors.names import Verdict
from monitors.results import GateResult
from monitors.sequential import always_valid_p, check_tau
from monitors.streaming import Moments

MEAN_SHIFT_TAU = 0.2

_UNIT = "observations"


def mean_shift_test(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    tau: float = MEAN_SHIFT_TAU,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """Sequential (always-valid) two-sided test of a shift in the mean numeric output.

    Effect size: (canary mean - baseline mean) / baseline sd; the mSPRT mixes over shifts of
    scale `tau` baseline sds (Welch variance), so the gate may be checked after every batch.
    """
    b, c = as_numeric(baseline, "baseline"), as_numeric(canary, "canary")
    return mean_shift_moments(
        Moments.of(b), Moments.of(c), alpha=alpha, tau=tau, min_n=min_n, gate=gate
    )


def mean_shift_moments(
    baseline: Moments,
    canary: Moments,
    *,
    alpha: float = 0.05,
    tau: float = MEAN_SHIFT_TAU,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """`mean_shift_test` on running moments (count, mean, sum of squared deviations)."""
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    tau = check_tau(tau)
    statistic, p_value, effect = math.nan, None, math.nan
    details: dict[str, float] = {"tau": tau, "sequential": 1.0}
    verdict: Verdict = "pass"
    reason = ""
    if baseline.count >= 2 and canary.count >= 2:
        sd = max(math.sqrt(baseline.variance), 1e-12)
        effect = (canary.mean - baseline.mean) / sd
        variance = (baseline.variance / baseline.count + canary.variance / canary.count) / sd**2
        statistic = effect / math.sqrt(variance) if variance > 0 else 0.0
        p_value = float(always_valid_p(effect, variance, tau, one_sided=False))
        details |= {"baseline_mean": baseline.mean, "canary_mean": canary.mean}
        moved = f"canary mean output moved {effect:+.3f} baseline sds"
        verdict = "fail" if p_value < alpha else "pass"
        reason = f"{moved}, {fmt_p(p_value, alpha)} (always-valid)"
    return make_result(
        gate=gate,
        test="mean_shift_msprt",
        statistic=statistic,
        p_value=p_value,
        effect_size=effect,
        threshold=alpha,
        n_baseline=baseline.count,
        n_canary=canary.count,
        min_n=max(min_n, 2),
        unit=_UNIT,
        verdict=verdict,
        reason=reason,
        details=details,
    )
