"""Quality gate on delayed labels: is the canary's accuracy worse than the baseline's?

`accuracy_test` takes, per arm, one boolean per labelled prediction (True / 1 = the prediction
matched the label, joined by request id upstream) and runs a one-sided two-proportion z-test of
H0: acc_baseline - acc_canary <= max_decrease against H1: > max_decrease (pooled SE when
max_decrease == 0, unpooled otherwise). It fails when p < alpha. Effect size: acc_canary -
acc_baseline. Parameters are validated (``ValueError``); fewer than `min_n` labelled predictions
in an arm gives ``inconclusive``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors._proportions import two_proportion_z
from monitors._validate import as_bool, check_alpha, check_fraction, check_gate, check_min_n
from monitors._verdict import fmt_p, fmt_pct, fmt_pts, make_result
from monitors.results import GateResult, Verdict


def accuracy_test(
    baseline_correct: npt.ArrayLike,
    canary_correct: npt.ArrayLike,
    *,
    max_decrease: float = 0.01,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "quality",
) -> GateResult:
    """Fail when the canary's accuracy is below the baseline's by more than `max_decrease`."""
    baseline = as_bool(baseline_correct, "baseline_correct")
    canary = as_bool(canary_correct, "canary_correct")
    max_decrease = check_fraction(max_decrease, "max_decrease")
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    n_baseline, n_canary = int(baseline.size), int(canary.size)

    statistic, p_value, diff = math.nan, None, math.nan
    details: dict[str, float] = {"max_decrease": max_decrease}
    verdict: Verdict = "pass"
    reason = ""
    if n_baseline and n_canary:
        baseline_wrong = n_baseline - int(np.count_nonzero(baseline))
        canary_wrong = n_canary - int(np.count_nonzero(canary))
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
