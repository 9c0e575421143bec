"""Operational gates: is the canary failing more requests, or answering more slowly?

- `error_rate_test`: one-sided two-proportion z-test of H0: rate_canary - rate_baseline <=
  max_increase (pooled SE when max_increase == 0, unpooled otherwise); fails when p < alpha.
  Effect size: the error-rate difference (canary minus baseline, a proportion).
- `latency_test`: one-sided Mann-Whitney U (canary greater) plus a quantile ratio; fails only
  when the canary is significantly slower (p < alpha) *and* its latency quantile exceeds the
  baseline's by more than `max_ratio`. Effect size: the Hodges-Lehmann shift in ms, reported
  with a two-sided (1 - 2 alpha) interval whose lower bound matches the one-sided test.

Both validate their parameters (``ValueError``) and return ``inconclusive`` when an arm has
fewer than `min_n` requests.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors import _normal as normal
from monitors._hodges_lehmann import hodges_lehmann
from monitors._proportions import two_proportion_z
from monitors._ranks import mann_whitney_greater
from monitors._validate import (
    FloatArray,
    as_numeric,
    check_alpha,
    check_bound,
    check_count,
    check_fraction,
    check_gate,
    check_min_n,
)
from monitors._verdict import fmt_p, fmt_pct, fmt_pts, hold_until_powered, make_result
from monitors.names import Verdict
from monitors.results import GateResult
from monitors.sequential import always_valid_p, check_tau, n_for_power
from monitors.streaming import FixedBins

ERROR_RATE_TAU = 0.01  # mixture scale of the sequential error-rate test: 1 pt above the margin
LATENCY_TAU = 0.1  # mixture scale of the sequential latency test, on P(canary > baseline) - 1/2


def error_rate_test(
    baseline_errors: int,
    baseline_n: int,
    canary_errors: int,
    canary_n: int,
    *,
    max_increase: float = 0.0,
    alpha: float = 0.05,
    min_n: int = 100,
    gate: str = "error_rate",
    sequential: bool = False,
    tau: float = ERROR_RATE_TAU,
    power: float = 0.8,
    require_power: bool = False,
) -> GateResult:
    """Fail when the canary's error rate exceeds the baseline's by more than `max_increase`.

    With ``sequential=True`` the p-value is the always-valid mSPRT p-value of the same z
    statistic (`monitors.sequential`, mixture scale `tau`), so the gate may be checked after
    every batch; ``details["n_for_power"]`` is the requests per arm at which an excess of `tau`
    over the margin is caught with probability `power`.
    """
    counts = {
        "baseline_errors": check_count(baseline_errors, "baseline_errors"),
        "baseline_n": check_count(baseline_n, "baseline_n"),
        "canary_errors": check_count(canary_errors, "canary_errors"),
        "canary_n": check_count(canary_n, "canary_n"),
    }
    for arm in ("baseline", "canary"):
        if counts[f"{arm}_errors"] > counts[f"{arm}_n"]:
            raise ValueError(
                f"{arm}_errors ({counts[f'{arm}_errors']}) cannot exceed {arm}_n "
                f"({counts[f'{arm}_n']})"
            )
    max_increase = check_fraction(max_increase, "max_increase")
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    tau = check_tau(tau)
    power = check_fraction(power, "power", low_inclusive=False)

    statistic, p_value, diff = math.nan, None, math.nan
    details: dict[str, float] = {"max_increase": max_increase, "sequential": float(sequential)}
    verdict: Verdict = "pass"
    reason = ""
    if baseline_n and canary_n:
        z = two_proportion_z(
            baseline_errors, baseline_n, canary_errors, canary_n, max_increase, alpha
        )
        statistic, p_value, diff = z.z, z.p_value, z.diff
        details |= {
            "baseline_rate": z.baseline_rate,
            "canary_rate": z.canary_rate,
            "se": z.se,
            "diff_upper_bound": z.upper_bound,
        }
        if sequential:
            details["fixed_horizon_p"] = p_value
            p_value = float(always_valid_p(diff - max_increase, z.se**2, tau))
            pooled = (baseline_errors + canary_errors) / (baseline_n + canary_n)
            spread = max(pooled * (1.0 - pooled), 1.0 / (baseline_n + canary_n))
            details |= {
                "tau": tau,
                "n_for_power": float(n_for_power(2.0 * spread, tau, tau, alpha=alpha, power=power)),
            }
        rates = f"canary error rate {fmt_pct(z.canary_rate)} vs baseline {fmt_pct(z.baseline_rate)}"
        if p_value < alpha:
            verdict = "fail"
            reason = (
                f"{rates} ({fmt_pts(diff)} > max {100 * max_increase:.2f} pts), "
                f"{fmt_p(p_value, alpha)}"
            )
        else:
            reason = (
                f"{rates} ({fmt_pts(diff)}, max {100 * max_increase:.2f} pts): no significant "
                f"excess, {fmt_p(p_value, alpha)}"
            )
        if sequential:
            reason += " (always-valid)"
        if sequential and require_power:
            verdict, reason = hold_until_powered(
                verdict,
                reason,
                details,
                baseline_n,
                canary_n,
                "requests",
                f"+{100 * tau:.2f} pts over the margin at {power:.0%} power",
            )
    return make_result(
        gate=gate,
        test="two_proportion_z",
        statistic=statistic,
        p_value=p_value,
        effect_size=diff,
        threshold=alpha,
        n_baseline=baseline_n,
        n_canary=canary_n,
        min_n=min_n,
        unit="requests",
        verdict=verdict,
        reason=reason,
        details=details,
    )


def latency_test(
    baseline_ms: npt.ArrayLike,
    canary_ms: npt.ArrayLike,
    *,
    quantile: float = 0.95,
    max_ratio: float = 1.2,
    alpha: float = 0.05,
    min_n: int = 30,
    gate: str = "latency",
    sequential: bool = False,
    tau: float = LATENCY_TAU,
    binned: FixedBins | None = None,
) -> GateResult:
    """Fail when the canary is significantly slower and its `quantile` grew beyond `max_ratio`.

    With ``sequential=True`` the Mann-Whitney p-value is replaced by the always-valid mSPRT
    p-value of the standardised U statistic: ``theta_hat = U / (n_b n_c) - 1/2`` (the estimated
    P(canary > baseline) - 1/2) with its tie-corrected null variance, mixture scale `tau`.

    With `binned` (counts of *every* latency of both arms on fixed bins), the Mann-Whitney U,
    its p-value (normal approximation, values in one bin tied) and the request counts come
    from the bins, and `baseline_ms` / `canary_ms` are uniform samples used only for the
    quantiles and the Hodges-Lehmann shift: bounded memory for any number of requests.
    """

    quantile = check_fraction(quantile, "quantile", low_inclusive=False)
    max_ratio = check_bound(max_ratio, "max_ratio", minimum=1.0, strict=False)
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    tau = check_tau(tau)
    baseline = as_numeric(baseline_ms, "baseline_ms", non_negative=True)
    canary = as_numeric(canary_ms, "canary_ms", non_negative=True)

    statistic, p_value, shift_ms = math.nan, None, math.nan
    details: dict[str, float] = {
        "quantile": quantile,
        "max_ratio": max_ratio,
        "sequential": float(sequential),
    }
    verdict: Verdict = "pass"
    reason = ""
    n_baseline, n_canary = int(baseline.size), int(canary.size)
    if binned is not None:
        n_baseline, n_canary = int(binned.baseline_counts.sum()), int(binned.canary_counts.sum())
    if baseline.size and canary.size and n_baseline and n_canary:
        if binned is None:
            statistic, p_value = mann_whitney_greater(canary, baseline)
        else:
            theta, u_variance = binned.mann_whitney()
            statistic = (theta + 0.5) * n_baseline * n_canary
            p_value = float(normal.sf(theta / math.sqrt(u_variance))) if u_variance else 0.5
            details["binned"] = 1.0
        shift = hodges_lehmann(baseline, canary, ci_level=1.0 - 2.0 * alpha)
        shift_ms = shift.estimate
        baseline_q = float(np.quantile(baseline, quantile))
        canary_q = float(np.quantile(canary, quantile))
        ratio = _ratio(canary_q, baseline_q)
        details |= {
            "baseline_quantile": baseline_q,
            "canary_quantile": canary_q,
            "quantile_ratio": ratio,
            "hl_shift_ms": shift_ms,
            "hl_ci_low": shift.ci_low,
            "hl_ci_high": shift.ci_high,
            "hl_ci_level": 1.0 - 2.0 * alpha,
            "hl_subsampled": float(shift.subsampled),
            "baseline_median": float(np.median(baseline)),
            "canary_median": float(np.median(canary)),
        }
        if sequential:
            details["fixed_horizon_p"] = p_value
            details["tau"] = tau
            if binned is None:
                p_value = _sequential_mann_whitney(statistic, baseline, canary, tau)
            else:
                p_value = float(always_valid_p(theta, u_variance, tau))
        label = f"p{100 * quantile:g}"
        summary = (
            f"canary {label} latency {canary_q:.1f} ms vs baseline {baseline_q:.1f} ms "
            f"(ratio {ratio:.2f}"
        )
        slower = p_value < alpha
        if slower and ratio > max_ratio:
            verdict = "fail"
            reason = (
                f"{summary} > max {max_ratio:g}), canary slower by {shift_ms:.1f} ms (HL), "
                f"{fmt_p(p_value, alpha)}"
            )
        elif slower:
            reason = (
                f"{summary} <= max {max_ratio:g}): canary slower by {shift_ms:.1f} ms (HL), "
                f"{fmt_p(p_value, alpha)}, but within the allowed ratio"
            )
        else:
            reason = (
                f"{summary}, max {max_ratio:g}): no significant slowdown "
                f"(HL {shift_ms:+.1f} ms), {fmt_p(p_value, alpha)}"
            )
        if sequential:
            reason += " (always-valid)"
    return make_result(
        gate=gate,
        test="mann_whitney",
        statistic=statistic,
        p_value=p_value,
        effect_size=shift_ms,
        threshold=alpha,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=min_n,
        unit="requests",
        verdict=verdict,
        reason=reason,
        details=details,
    )


def _sequential_mann_whitney(
    u_statistic: float, baseline: FloatArray, canary: FloatArray, tau: float
) -> float:
    n_b, n_c = baseline.size, canary.size
    n = n_b + n_c
    _, tie_counts = np.unique(np.concatenate([baseline, canary]), return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts)) / (n * (n - 1.0))
    variance = (n + 1.0 - tie_term) / (12.0 * n_b * n_c) if n > 1 else 0.0
    return float(always_valid_p(u_statistic / (n_b * n_c) - 0.5, variance, tau))


def _ratio(canary_q: float, baseline_q: float) -> float:
    """canary / baseline; 1 when both are 0, +inf when only the baseline is 0."""
    if baseline_q > 0.0:
        return canary_q / baseline_q
    return 1.0 if canary_q == 0.0 else math.inf
