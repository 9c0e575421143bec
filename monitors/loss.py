"""Loss gate on delayed labels: is the canary's mean per-request loss worse than the baseline's?

- `per_request_loss`: the losses from outputs and labels: ``log_loss`` (outputs are
  P(label == 1), labels 0 or 1, probabilities clipped at 1e-15), ``mae`` (absolute error) and
  ``rmse`` (squared error).
- `loss_test`: non-inferiority on those losses, H0: mean_canary - mean_baseline <=
  max_increase, Welch standard error; for ``rmse`` the comparison, margin and effect size are
  in RMSE units (delta method on the mean squared error). It fails when p < alpha; with
  ``sequential=True`` the p-value is the always-valid mSPRT one (`monitors.sequential`), mixing
  over excesses of scale `tau` (default: the baseline loss's sd / 4).
- `loss_moments_test`: `loss_test` on running moments of each arm's losses.

Parameters are validated (``ValueError``); fewer than `min_n` (at least 2) labelled predictions
in an arm gives ``inconclusive``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors import _normal as normal
from monitors._validate import (
    FloatArray,
    as_numeric,
    check_alpha,
    check_bound,
    check_gate,
    check_min_n,
)
from monitors._verdict import fmt_p, make_result
from monitors.names import LOSS_METRICS, LossMetric, Verdict
from monitors.results import GateResult
from monitors.sequential import always_valid_p, check_tau
from monitors.streaming import Moments

LOG_LOSS_CLIP = 1e-15


def per_request_loss(
    metric: LossMetric, outputs: npt.ArrayLike, labels: npt.ArrayLike
) -> FloatArray:
    """Per-request loss: log-loss of P(label == 1), absolute error, or squared error (rmse)."""
    if metric not in LOSS_METRICS:
        raise ValueError(f"metric must be one of {LOSS_METRICS}, got {metric!r}")
    predicted = as_numeric(outputs, "outputs")
    truth = as_numeric(labels, "labels")
    if predicted.size != truth.size:
        raise ValueError(f"outputs ({predicted.size}) and labels ({truth.size}) differ in length")
    if metric == "log_loss":
        if not np.isin(truth, (0.0, 1.0)).all():
            raise ValueError("log_loss needs labels 0 or 1")
        p = np.clip(predicted, LOG_LOSS_CLIP, 1.0 - LOG_LOSS_CLIP)
        return np.asarray(-(truth * np.log(p) + (1.0 - truth) * np.log1p(-p)))
    if metric == "mae":
        return np.abs(predicted - truth)
    return np.asarray((predicted - truth) ** 2)


def loss_test(
    baseline_loss: npt.ArrayLike,
    canary_loss: npt.ArrayLike,
    *,
    metric: LossMetric = "log_loss",
    max_increase: float = 0.0,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
    sequential: bool = False,
    tau: float | None = None,
) -> GateResult:
    """Fail when the canary's mean loss exceeds the baseline's by more than `max_increase`.

    Losses come from `per_request_loss` (squared errors for ``rmse``). For ``rmse`` the
    comparison, margin and effect size are in RMSE units (delta method). `tau` defaults to the
    baseline loss's standard deviation / 4 (a quarter-sd excess).
    """
    baseline = as_numeric(baseline_loss, "baseline_loss", non_negative=True)
    canary = as_numeric(canary_loss, "canary_loss", non_negative=True)
    return loss_moments_test(
        Moments.of(baseline),
        Moments.of(canary),
        metric=metric,
        max_increase=max_increase,
        alpha=alpha,
        min_n=min_n,
        gate=gate,
        sequential=sequential,
        tau=tau,
    )


def loss_moments_test(
    baseline: Moments,
    canary: Moments,
    *,
    metric: LossMetric = "log_loss",
    max_increase: float = 0.0,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
    sequential: bool = False,
    tau: float | None = None,
) -> GateResult:
    """`loss_test` on running moments of the per-request losses of each arm."""
    if metric not in LOSS_METRICS:
        raise ValueError(f"metric must be one of {LOSS_METRICS}, got {metric!r}")
    for arm, moments in (("baseline", baseline), ("canary", canary)):
        if moments.count and moments.mean < 0.0:
            raise ValueError(f"{arm} losses must be >= 0, got mean {moments.mean!r}")
    max_increase = check_bound(max_increase, "max_increase", minimum=0.0, strict=False)
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    if tau is not None:
        tau = check_tau(tau)
    n_baseline, n_canary = baseline.count, canary.count
    statistic, p_value, diff = math.nan, None, math.nan
    details: dict[str, float] = {"max_increase": max_increase, "sequential": float(sequential)}
    verdict: Verdict = "pass"
    reason = ""
    if n_baseline >= 2 and n_canary >= 2:
        baseline_value, baseline_var = _metric_and_variance(metric, baseline)
        canary_value, canary_var = _metric_and_variance(metric, canary)
        diff = canary_value - baseline_value
        variance = baseline_var + canary_var
        se = math.sqrt(variance)
        excess = diff - max_increase
        statistic = excess / se if se > 0 else math.copysign(math.inf, excess) if excess else 0.0
        p_value = float(normal.sf(statistic))
        details |= {
            f"baseline_{metric}": baseline_value,
            f"canary_{metric}": canary_value,
            "se": se,
        }
        if sequential:
            scale = tau if tau is not None else max(math.sqrt(baseline_var * n_baseline) / 4, 1e-9)
            details |= {"fixed_horizon_p": p_value, "tau": scale}
            p_value = float(always_valid_p(excess, variance, scale))
        values = f"canary {metric} {canary_value:.4g} vs baseline {baseline_value:.4g}"
        if p_value < alpha:
            verdict = "fail"
            reason = f"{values} ({diff:+.4g}, worse than max +{max_increase:g}), "
        else:
            reason = f"{values} ({diff:+.4g}, max +{max_increase:g}): no significant loss, "
        reason += fmt_p(p_value, alpha) + (" (always-valid)" if sequential else "")
    return make_result(
        gate=gate,
        test=f"{metric}_z",
        statistic=statistic,
        p_value=p_value,
        effect_size=diff,
        threshold=alpha,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=max(min_n, 2),
        unit="labelled predictions",
        verdict=verdict,
        reason=reason,
        details=details,
    )


def _metric_and_variance(metric: LossMetric, losses: Moments) -> tuple[float, float]:
    mean = losses.mean
    var_of_mean = losses.variance / losses.count
    if metric != "rmse":
        return mean, var_of_mean
    rmse = math.sqrt(mean)
    return rmse, var_of_mean / (4.0 * mean) if mean > 0 else 0.0
