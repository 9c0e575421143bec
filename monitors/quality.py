"""Quality gate on delayed labels: is the canary's accuracy worse than the baseline's?

`accuracy_test` takes, per arm, one boolean per labelled prediction (True / 1 = the prediction
matched the label, joined by request id upstream) and runs a one-sided two-proportion z-test of
H0: acc_baseline - acc_canary <= max_decrease against H1: > max_decrease (pooled SE when
max_decrease == 0, unpooled otherwise). It fails when p < alpha. Effect size: acc_canary -
acc_baseline. Parameters are validated (``ValueError``); fewer than `min_n` labelled predictions
in an arm gives ``inconclusive``.

With ``sequential=True`` (what the rollout manager uses) the p-value is the always-valid mSPRT
p-value of the same statistic (`monitors.sequential`), so the gate may be checked after every
batch of labels. The other metrics:

- `loss_test`: non-inferiority on a per-request loss, H0: mean_canary - mean_baseline <=
  max_increase, Welch standard error: ``log_loss`` (outputs are P(label == 1)), ``mae`` and
  ``rmse`` (RMSE compared through the delta method on the mean squared error). In
  `monitors.loss`, with `loss_moments_test` and `per_request_loss`, and importable from here.
- `auc_test`: H0: auc_baseline - auc_canary <= max_decrease, DeLong variance per arm.
- `per_request_loss`: the losses `loss_test` takes, from outputs and labels.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors import _normal as normal
from monitors._proportions import two_proportion_z
from monitors._validate import (
    FloatArray,
    as_bool,
    as_numeric,
    check_alpha,
    check_count,
    check_fraction,
    check_gate,
    check_min_n,
)
from monitors._verdict import fmt_p, fmt_pct, fmt_pts, hold_until_powered, make_result
from monitors.loss import LOG_LOSS_CLIP, loss_moments_test, loss_test, per_request_loss
from monitors.names import LOSS_METRICS, LossMetric, Verdict
from monitors.results import GateResult
from monitors.sequential import always_valid_p, check_tau, n_for_power

__all__ = [
    "ACCURACY_TAU",
    "AUC_TAU",
    "LOG_LOSS_CLIP",
    "LOSS_METRICS",
    "LossMetric",
    "accuracy_counts_test",
    "accuracy_test",
    "auc_test",
    "delong",
    "loss_moments_test",
    "loss_test",
    "per_request_loss",
]

ACCURACY_TAU = 0.03  # sequential accuracy test tuned to a 3-point loss beyond the margin
AUC_TAU = 0.03


def accuracy_test(
    baseline_correct: npt.ArrayLike,
    canary_correct: npt.ArrayLike,
    *,
    max_decrease: float = 0.01,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
    sequential: bool = False,
    tau: float = ACCURACY_TAU,
    power: float = 0.8,
    require_power: bool = False,
) -> GateResult:
    """Fail when the canary's accuracy is below the baseline's by more than `max_decrease`."""
    baseline = as_bool(baseline_correct, "baseline_correct")
    canary = as_bool(canary_correct, "canary_correct")
    return accuracy_counts_test(
        int(np.count_nonzero(baseline)),
        int(baseline.size),
        int(np.count_nonzero(canary)),
        int(canary.size),
        max_decrease=max_decrease,
        alpha=alpha,
        min_n=min_n,
        gate=gate,
        sequential=sequential,
        tau=tau,
        power=power,
        require_power=require_power,
    )


def accuracy_counts_test(
    baseline_correct: int,
    baseline_n: int,
    canary_correct: int,
    canary_n: int,
    *,
    max_decrease: float = 0.01,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
    sequential: bool = False,
    tau: float = ACCURACY_TAU,
    power: float = 0.8,
    require_power: bool = False,
) -> GateResult:
    """`accuracy_test` on counts: correct predictions out of labelled ones, per arm."""
    for arm, correct, n in (
        ("baseline", baseline_correct, baseline_n),
        ("canary", canary_correct, canary_n),
    ):
        check_count(correct, f"{arm}_correct")
        if check_count(n, f"{arm}_n") < correct:
            raise ValueError(f"{arm}_correct ({correct}) cannot exceed {arm}_n ({n})")
    max_decrease = check_fraction(max_decrease, "max_decrease")
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    tau = check_tau(tau)
    power = check_fraction(power, "power", low_inclusive=False)
    n_baseline, n_canary = int(baseline_n), int(canary_n)

    statistic, p_value, diff = math.nan, None, math.nan
    details: dict[str, float] = {"max_decrease": max_decrease, "sequential": float(sequential)}
    verdict: Verdict = "pass"
    reason = ""
    if n_baseline and n_canary:
        baseline_wrong = n_baseline - int(baseline_correct)
        canary_wrong = n_canary - int(canary_correct)
        z = two_proportion_z(
            baseline_wrong, n_baseline, canary_wrong, n_canary, max_decrease, alpha
        )
        statistic, p_value, diff = z.z, z.p_value, -z.diff
        baseline_accuracy, canary_accuracy = 1.0 - z.baseline_rate, 1.0 - z.canary_rate
        details |= {
            "baseline_accuracy": baseline_accuracy,
            "canary_accuracy": canary_accuracy,
            "se": z.se,
            "diff_lower_bound": -z.upper_bound,
        }
        if sequential:
            details["fixed_horizon_p"] = p_value
            p_value = float(always_valid_p(z.diff - max_decrease, z.se**2, tau))
            pooled = (baseline_wrong + canary_wrong) / (n_baseline + n_canary)
            spread = max(pooled * (1.0 - pooled), 1.0 / (n_baseline + n_canary))
            details |= {
                "tau": tau,
                "n_for_power": float(n_for_power(2.0 * spread, tau, tau, alpha=alpha, power=power)),
            }
        accuracies = (
            f"canary accuracy {fmt_pct(canary_accuracy)} vs baseline {fmt_pct(baseline_accuracy)}"
        )
        if p_value < alpha:
            verdict = "fail"
            reason = (
                f"{accuracies} ({fmt_pts(diff)}, worse than the allowed "
                f"-{100 * max_decrease:.2f} pts), {fmt_p(p_value, alpha)}"
            )
        else:
            reason = (
                f"{accuracies} ({fmt_pts(diff)}, max decrease {100 * max_decrease:.2f} pts): "
                f"no significant loss, {fmt_p(p_value, alpha)}"
            )
        if sequential:
            reason += " (always-valid)"
        if sequential and require_power:
            verdict, reason = hold_until_powered(
                verdict,
                reason,
                details,
                n_baseline,
                n_canary,
                "labelled predictions",
                f"-{100 * tau:.2f} pts beyond the margin at {power:.0%} power",
            )
    return make_result(
        gate=gate,
        test="accuracy_z",
        statistic=statistic,
        p_value=p_value,
        effect_size=diff,
        threshold=alpha,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=min_n,
        unit="labelled predictions",
        verdict=verdict,
        reason=reason,
        details=details,
    )


def auc_test(
    baseline_scores: npt.ArrayLike,
    baseline_labels: npt.ArrayLike,
    canary_scores: npt.ArrayLike,
    canary_labels: npt.ArrayLike,
    *,
    max_decrease: float = 0.01,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
    sequential: bool = False,
    tau: float = AUC_TAU,
) -> GateResult:
    """Fail when the canary's ROC AUC is below the baseline's by more than `max_decrease`."""
    arms = []
    for arm, scores, labels in (
        ("baseline", baseline_scores, baseline_labels),
        ("canary", canary_scores, canary_labels),
    ):
        score = as_numeric(scores, f"{arm}_scores")
        label = as_bool(labels, f"{arm}_labels")
        if score.size != label.size:
            raise ValueError(f"{arm}_scores and {arm}_labels differ in length")
        arms.append((score, label))
    max_decrease = check_fraction(max_decrease, "max_decrease")
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    tau = check_tau(tau)
    n_baseline, n_canary = int(arms[0][0].size), int(arms[1][0].size)
    statistic, p_value, diff = math.nan, None, math.nan
    details: dict[str, float] = {"max_decrease": max_decrease, "sequential": float(sequential)}
    verdict: Verdict = "pass"
    reason = ""
    both_classes = all(0 < int(label.sum()) < label.size for _, label in arms)
    if both_classes:
        (baseline_auc, baseline_var), (canary_auc, canary_var) = (delong(s, y) for s, y in arms)
        diff = canary_auc - baseline_auc
        variance = baseline_var + canary_var
        excess = -diff - max_decrease
        se = math.sqrt(variance)
        statistic = excess / se if se > 0 else math.copysign(math.inf, excess) if excess else 0.0
        p_value = float(normal.sf(statistic))
        details |= {"baseline_auc": baseline_auc, "canary_auc": canary_auc, "se": se}
        if sequential:
            details |= {"fixed_horizon_p": p_value, "tau": tau}
            p_value = float(always_valid_p(excess, variance, tau))
        values = f"canary AUC {canary_auc:.4f} vs baseline {baseline_auc:.4f}"
        if p_value < alpha:
            verdict = "fail"
            reason = f"{values} ({diff:+.4f}, worse than max -{max_decrease:g}), "
        else:
            reason = f"{values} ({diff:+.4f}, max -{max_decrease:g}): no significant loss, "
        reason += fmt_p(p_value, alpha) + (" (always-valid)" if sequential else "")
    elif n_baseline and n_canary:
        reason = "AUC needs both classes among each arm's labels"
        verdict = "inconclusive"
    return make_result(
        gate=gate,
        test="auc_delong",
        statistic=statistic,
        p_value=p_value,
        effect_size=diff,
        threshold=alpha,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=min_n,
        unit="labelled predictions",
        verdict=verdict,
        reason=reason,
        details=details,
    )


def delong(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """ROC AUC (ties count 1/2) and its DeLong variance; both classes must be present."""

    positives, negatives = scores[labels], scores[~labels]
    m, n = positives.size, negatives.size
    from scipy import stats

    all_ranks = stats.rankdata(np.concatenate([positives, negatives]))
    positive_ranks = stats.rankdata(positives)
    negative_ranks = stats.rankdata(negatives)
    v10 = (all_ranks[:m] - positive_ranks) / n  # share of negatives below each positive
    v01 = 1.0 - (all_ranks[m:] - negative_ranks) / m  # share of positives above each negative
    auc = float(v10.mean())
    variance = float(np.var(v10, ddof=1) / m if m > 1 else 0.0) + float(
        np.var(v01, ddof=1) / n if n > 1 else 0.0
    )
    return auc, variance
