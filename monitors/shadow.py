"""Shadow comparisons: the shadow version answered the *same* requests, so the tests are paired.

- `mcnemar_test`: classifiers with labels. Per request, was the baseline right, was the shadow
  right; exact McNemar (binomial test on the discordant pairs) of H0: the shadow is wrong no
  more often than the baseline. Effect size: shadow accuracy minus baseline accuracy.
- `disagreement_test`: classifiers without labels. Share of requests where the two predicted
  classes differ, with a one-sided exact (Clopper-Pearson) test of H0: rate <= `max_rate`.
- `wilcoxon_test`: regressors. Wilcoxon signed-rank test on shadow - baseline outputs
  (two-sided: any systematic shift), effect size the median difference.

All return `GateResult` (gate ``"shadow"``), ``inconclusive`` below `min_n` pairs. These are
fixed-horizon tests, kept as a library; the shadow steps use the safety tests below them, with
anytime-valid bounds and three outcomes: `disagreement_safety`, `paired_accuracy_safety`
(McNemar's question with a margin) and `paired_shift_safety`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors._validate import (
    as_1d,
    as_bool,
    as_numeric,
    check_alpha,
    check_fraction,
    check_gate,
    check_min_n,
)
from monitors._verdict import fmt_p, fmt_pct, make_result
from monitors.names import Verdict
from monitors.results import GateResult


def mcnemar_test(
    baseline_correct: npt.ArrayLike,
    shadow_correct: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "shadow",
) -> GateResult:
    """Exact one-sided McNemar test: is the shadow wrong more often on the same requests?"""

    baseline = as_bool(baseline_correct, "baseline_correct")
    shadow = as_bool(shadow_correct, "shadow_correct")
    _same_length(baseline.size, shadow.size)
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    only_baseline = int(np.count_nonzero(baseline & ~shadow))  # shadow wrong, baseline right
    only_shadow = int(np.count_nonzero(~baseline & shadow))
    discordant = only_baseline + only_shadow
    n = int(baseline.size)
    from scipy import stats

    p_value = (
        float(stats.binomtest(only_baseline, discordant, 0.5, alternative="greater").pvalue)
        if discordant
        else 1.0
    )
    diff = (only_shadow - only_baseline) / n if n else math.nan
    verdict: Verdict = "fail" if p_value < alpha else "pass"
    reason = (
        f"shadow right where baseline wrong on {only_shadow}, wrong where baseline right on "
        f"{only_baseline} of {n} requests ({100 * diff:+.2f} pts), {fmt_p(p_value, alpha)}"
    )
    return make_result(
        gate=gate,
        test="mcnemar_exact",
        statistic=float(only_baseline),
        p_value=p_value,
        effect_size=diff,
        threshold=alpha,
        n_baseline=n,
        n_canary=n,
        min_n=min_n,
        unit="paired requests",
        verdict=verdict,
        reason=reason,
        details={"only_baseline_right": only_baseline, "only_shadow_right": only_shadow},
    )


def disagreement_test(
    baseline_outputs: npt.ArrayLike,
    shadow_outputs: npt.ArrayLike,
    *,
    max_rate: float = 0.05,
    alpha: float = 0.05,
    min_n: int = 50,
    gate: str = "shadow",
) -> GateResult:
    """Fail when the share of requests with different predicted classes exceeds `max_rate`."""

    baseline = as_1d(baseline_outputs, "baseline_outputs")
    shadow = as_1d(shadow_outputs, "shadow_outputs")
    _same_length(baseline.size, shadow.size)
    max_rate = check_fraction(max_rate, "max_rate")
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    n = int(baseline.size)
    differ = int(np.count_nonzero(baseline != shadow))
    rate = differ / n if n else math.nan
    from scipy import stats

    p_value = (
        float(stats.binomtest(differ, n, max_rate, alternative="greater").pvalue) if n else 1.0
    )
    verdict: Verdict = "fail" if p_value < alpha else "pass"
    reason = (
        f"shadow disagrees with baseline on {fmt_pct(rate) if n else 'n/a'} of {n} requests "
        f"(max {fmt_pct(max_rate)}), {fmt_p(p_value, alpha)}"
    )
    return make_result(
        gate=gate,
        test="disagreement_binomial",
        statistic=float(differ),
        p_value=p_value,
        effect_size=rate,
        threshold=alpha,
        n_baseline=n,
        n_canary=n,
        min_n=min_n,
        unit="paired requests",
        verdict=verdict,
        reason=reason,
        details={"max_rate": max_rate},
    )


def wilcoxon_test(
    baseline_outputs: npt.ArrayLike,
    shadow_outputs: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_n: int = 30,
    gate: str = "shadow",
) -> GateResult:
    """Two-sided Wilcoxon signed-rank test of shadow - baseline outputs on the same requests."""

    baseline = as_numeric(baseline_outputs, "baseline_outputs")
    shadow = as_numeric(shadow_outputs, "shadow_outputs")
    _same_length(baseline.size, shadow.size)
    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    differences = shadow - baseline
    n = int(differences.size)
    statistic, p_value, median = math.nan, None, math.nan
    verdict: Verdict = "pass"
    reason = ""
    if n:
        median = float(np.median(differences))
        if np.any(differences != 0.0):
            from scipy import stats

            res = stats.wilcoxon(differences)
            statistic, p_value = float(res.statistic), float(res.pvalue)
        else:
            statistic, p_value = 0.0, 1.0
        verdict = "fail" if p_value < alpha else "pass"
        reason = (
            f"shadow - baseline outputs: median {median:+.4g} over {n} requests, "
            f"{fmt_p(p_value, alpha)}"
        )
    return make_result(
        gate=gate,
        test="wilcoxon_signed_rank",
        statistic=statistic,
        p_value=p_value,
        effect_size=median,
        threshold=alpha,
        n_baseline=n,
        n_canary=n,
        min_n=min_n,
        unit="paired requests",
        verdict=verdict,
        reason=reason,
        details={},
    )


def _same_length(n_baseline: int, n_shadow: int) -> None:
    if n_baseline != n_shadow:
        raise ValueError(
            f"paired tests need one shadow value per baseline value, got {n_baseline} baseline "
            f"and {n_shadow} shadow"
        )


def disagreement_safety(
    baseline_outputs: npt.ArrayLike,
    shadow_outputs: npt.ArrayLike,
    *,
    max_rate: float,
    alpha: float,
    n_opt: float = 2_000,
    gate: str = "shadow",
) -> GateResult:
    """A safety test of the share of requests whose outputs differ: **pass** only when its
    anytime-valid upper bound is at most ``max_rate`` (proven below), **fail** when its lower
    bound is above it, else inconclusive. Each bound at ``alpha / 2``
    (:func:`monitors.anytime.bernoulli_bounds`), valid however often the step is looked at."""
    from monitors.anytime import bernoulli_bounds

    baseline = as_1d(baseline_outputs, "baseline_outputs")
    shadow = as_1d(shadow_outputs, "shadow_outputs")
    _same_length(baseline.size, shadow.size)
    max_rate = check_fraction(max_rate, "max_rate")
    alpha, gate = check_alpha(alpha), check_gate(gate)
    n = int(baseline.size)
    differ = int(np.count_nonzero(baseline != shadow))
    bounds = bernoulli_bounds(differ, n, alpha / 2, n_opt)
    verdict: Verdict = (
        "fail" if bounds.low > max_rate else "pass" if bounds.high <= max_rate else "inconclusive"
    )
    where = (
        f"shadow disagrees with baseline on {fmt_pct(bounds.estimate) if n else 'n/a'} of {n} "
        f"requests ({fmt_pct(bounds.low)} to {fmt_pct(bounds.high)}; max {fmt_pct(max_rate)})"
    )
    said = {"fail": "proven above the max", "pass": "proven below the max", "inconclusive": ""}
    return GateResult(
        gate=gate,
        test="disagreement_bounds",
        statistic=float(differ),
        p_value=None,
        effect_size=bounds.estimate,
        threshold=max_rate,
        n_baseline=n,
        n_canary=n,
        verdict=verdict,
        reason=f"{where}{': ' + said[verdict] if said[verdict] else ': not decided yet'}",
        details={"max_rate": max_rate},
        ci_low=bounds.low,
        ci_high=bounds.high,
        alpha=alpha,
    )


def paired_accuracy_safety(
    baseline_correct: npt.ArrayLike,
    shadow_correct: npt.ArrayLike,
    *,
    max_decrease: float,
    alpha: float,
    n_opt: float = 2_000,
    gate: str = "shadow",
) -> GateResult:
    """McNemar's question as a safety test with a margin, anytime-valid: on labelled requests
    both versions answered, the shadow's accuracy minus the baseline's is
    ``P(only the shadow right) - P(only the baseline right)``, and each of those two shares of
    requests has exact Bernoulli bounds (the beta-binomial mixture, tight at small shares) at
    ``alpha / 2`` a side: **pass** when the difference is proven at least ``-max_decrease``
    (the shadow is not worse by more than the margin), **fail** when it is proven below."""
    from monitors.anytime import bernoulli_bounds

    baseline = as_bool(baseline_correct, "baseline_correct")
    shadow = as_bool(shadow_correct, "shadow_correct")
    _same_length(baseline.size, shadow.size)
    if not math.isfinite(max_decrease) or not 0 <= max_decrease < 1:
        raise ValueError(f"max_decrease must be in [0, 1), got {max_decrease!r}")
    alpha, gate = check_alpha(alpha), check_gate(gate)
    n = int(baseline.size)
    only_shadow = int(np.count_nonzero(~baseline & shadow))
    only_baseline = int(np.count_nonzero(baseline & ~shadow))
    gains = bernoulli_bounds(only_shadow, n, alpha / 2, n_opt)
    losses = bernoulli_bounds(only_baseline, n, alpha / 2, n_opt)
    low, high = gains.low - losses.high, gains.high - losses.low
    difference = (only_shadow - only_baseline) / n if n else math.nan
    verdict: Verdict = "inconclusive"
    if n and high < -max_decrease:
        verdict = "fail"
    elif n and low >= -max_decrease:
        verdict = "pass"
    where = (
        f"shadow minus baseline accuracy {100 * difference:+.2f} pts ({100 * low:+.2f} to "
        f"{100 * high:+.2f}) on {n} labelled requests (shadow alone right on {only_shadow}, "
        f"baseline alone on {only_baseline}); allowed {100 * max_decrease:.2f} pts lower"
        if n
        else "no labelled requests yet"
    )
    said = {
        "fail": "shadow proven less accurate than allowed",
        "pass": "shadow proven not less accurate than allowed",
        "inconclusive": "shadow accuracy not decided yet",
    }
    return GateResult(
        gate=gate,
        test="paired_accuracy_bounds",
        statistic=difference,
        p_value=None,
        effect_size=difference,
        threshold=-max_decrease,
        n_baseline=n,
        n_canary=n,
        verdict=verdict,
        reason=f"{said[verdict]}: {where}",
        details={
            "only_shadow_right": float(only_shadow),
            "only_baseline_right": float(only_baseline),
        },
        ci_low=low if n else -1.0,
        ci_high=high if n else 1.0,
        alpha=alpha,
    )


def paired_shift_safety(
    baseline_outputs: npt.ArrayLike,
    shadow_outputs: npt.ArrayLike,
    *,
    max_shift: float,
    alpha: float,
    n_opt: float = 2_000,
    gate: str = "shadow",
) -> GateResult:
    """An equivalence test of the median shift of shadow minus baseline outputs on the same
    requests, against ``max_shift``: a sign test with a margin. If the median difference is at
    most ``max_shift``, a difference exceeds it with probability at most 1/2, so the share of
    differences above ``max_shift`` (and, mirrored, below ``-max_shift``) gets anytime-valid
    bounds at ``alpha / 4`` each: **pass** when both upper bounds are below 1/2 (the median is
    proven within the margin), **fail** when either lower bound is above 1/2 (proven beyond)."""
    from monitors.anytime import bernoulli_bounds

    baseline = as_numeric(baseline_outputs, "baseline_outputs")
    shadow = as_numeric(shadow_outputs, "shadow_outputs")
    _same_length(baseline.size, shadow.size)
    if not math.isfinite(max_shift) or max_shift < 0:
        raise ValueError(f"max_shift must be a finite number >= 0, got {max_shift!r}")
    alpha, gate = check_alpha(alpha), check_gate(gate)
    differences = shadow - baseline
    n = int(differences.size)
    above = bernoulli_bounds(int(np.count_nonzero(differences > max_shift)), n, alpha / 4, n_opt)
    below = bernoulli_bounds(int(np.count_nonzero(differences < -max_shift)), n, alpha / 4, n_opt)
    verdict: Verdict = "inconclusive"
    if above.low > 0.5 or below.low > 0.5:
        verdict = "fail"
    elif n and above.high < 0.5 and below.high < 0.5:
        verdict = "pass"
    median = float(np.median(differences)) if n else math.nan
    where = (
        f"shadow - baseline outputs: median {median:+.4g} over {n} requests; beyond "
        f"+{max_shift:g}: {fmt_pct(above.estimate) if n else 'n/a'} (up to {fmt_pct(above.high)}), "
        f"beyond -{max_shift:g}: {fmt_pct(below.estimate) if n else 'n/a'} "
        f"(up to {fmt_pct(below.high)}); a median beyond the margin means more than half"
    )
    said = {
        "fail": "median shift proven beyond the margin",
        "pass": "median shift proven within the margin",
        "inconclusive": "median shift not decided yet",
    }
    return GateResult(
        gate=gate,
        test="paired_shift_sign",
        statistic=median,
        p_value=None,
        effect_size=median,
        threshold=max_shift,
        n_baseline=n,
        n_canary=n,
        verdict=verdict,
        reason=f"{said[verdict]}: {where}",
        details={
            "share_above": above.estimate,
            "share_below": below.estimate,
            "max_shift": max_shift,
        },
        alpha=alpha,
    )
