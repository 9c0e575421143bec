"""Output-drift gates: is the canary's output distribution different from the baseline's?

Each function takes the outputs of the two arms serving at the same time (1-D array-likes;
lists of Python scalars are fine), validates its parameters (``ValueError`` otherwise) and
returns a `GateResult`; ``inconclusive`` when an arm has fewer than `min_n` values.

- `ks_test`: two-sided two-sample Kolmogorov-Smirnov (`scipy.stats.ks_2samp`) on numeric
  outputs; fails when p < alpha. Effect size: the KS distance D.
- `chi_square_test`: Pearson chi-square on the 2 x k table of category counts (union of the
  categories, no Yates correction); fails when p < alpha. Effect size: Cramer's V.
- `psi`: population stability index over bins cut at baseline quantiles (`psi_edges`), shares
  clipped at 1e-4; fails when PSI > threshold. No p-value. In `monitors.stability`.
- `mean_shift_test`: sequential (always-valid mSPRT) two-sided test of a shift in the mean
  numeric output, in baseline sds; safe to check after every batch. In `monitors.mean_shift`.
- `output_drift`: picks one of the above (``method="auto"``: chi-square for categorical
  outputs, KS otherwise), or a column test of `monitors.twosample` (``wasserstein``,
  ``jensen_shannon``, ``anderson``) wrapped as a gate result.

Only `mean_shift_test` is sequential; the others are fixed-horizon tests (or thresholds on an
effect size: PSI, Wasserstein, Jensen-Shannon), which is what to use for a gate checked often.
The count and moment forms (`chi_square_table`, `psi_counts`, `mean_shift_moments`) and
`psi_edges` are importable from here as well as from their own modules.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from monitors._bins import psi_edges
from monitors._categories import contingency_table, pearson_chi2
from monitors._validate import as_1d, as_numeric, check_alpha, check_bound, check_gate, check_min_n
from monitors._verdict import fmt_p, make_result
from monitors.mean_shift import MEAN_SHIFT_TAU, mean_shift_moments, mean_shift_test
from monitors.names import Verdict
from monitors.results import GateResult
from monitors.stability import psi, psi_counts
from monitors.twosample import column_drift

__all__ = [
    "DRIFT_METHODS",
    "MAX_CATEGORICAL_FLOAT_VALUES",
    "MEAN_SHIFT_TAU",
    "DriftMethod",
    "chi_square_table",
    "chi_square_test",
    "ks_test",
    "mean_shift_moments",
    "mean_shift_test",
    "output_drift",
    "psi",
    "psi_counts",
    "psi_edges",
]

from monitors.names import DRIFT_METHODS, DriftMethod

MAX_CATEGORICAL_FLOAT_VALUES = 10

_UNIT = "observations"


def ks_test(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """Two-sided two-sample KS test of the canary's numeric outputs against the baseline's."""

    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    baseline_values = as_numeric(baseline, "baseline")
    canary_values = as_numeric(canary, "canary")
    statistic, p_value = math.nan, None
    details: dict[str, float] = {}
    verdict: Verdict = "pass"
    reason = ""
    if baseline_values.size and canary_values.size:
        from scipy import stats

        res = stats.ks_2samp(baseline_values, canary_values)
        statistic, p_value = float(res.statistic), float(res.pvalue)
        # statistic_sign +1: the baseline ECDF is above the canary's, so the canary runs higher.
        direction = float(res.statistic_sign) if statistic > 0 else 0.0
        details = {
            "location": float(res.statistic_location),
            "direction": direction,
            "baseline_median": float(np.median(baseline_values)),
            "canary_median": float(np.median(canary_values)),
        }
        summary = f"KS D={statistic:.3f}"
        if p_value < alpha:
            verdict = "fail"
            side = "higher" if direction > 0 else "lower"
            reason = (
                f"canary output distribution differs from baseline ({summary}, canary runs "
                f"{side} around {details['location']:.4g}), {fmt_p(p_value, alpha)}"
            )
        else:
            reason = (
                f"no significant difference between canary and baseline output distributions "
                f"({summary}), {fmt_p(p_value, alpha)}"
            )
    return make_result(
        gate=gate,
        test="ks",
        statistic=statistic,
        p_value=p_value,
        effect_size=statistic,
        threshold=alpha,
        n_baseline=int(baseline_values.size),
        n_canary=int(canary_values.size),
        min_n=min_n,
        unit=_UNIT,
        verdict=verdict,
        reason=reason,
        details=details,
    )


def chi_square_test(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """Chi-square test of the canary's category mix against the baseline's (no Yates)."""
    baseline_values = as_1d(baseline, "baseline")
    canary_values = as_1d(canary, "canary")
    labels, table = contingency_table(baseline_values, canary_values)
    return chi_square_table(labels, table, alpha=alpha, min_n=min_n, gate=gate)


def chi_square_table(
    labels: Sequence[Hashable],
    table: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """`chi_square_test` on counts: a 2 x k table (row 0 baseline, row 1 canary) of `labels`."""

    alpha, min_n, gate = check_alpha(alpha), check_min_n(min_n), check_gate(gate)
    counts = np.asarray(table, dtype=np.int64).reshape(2, len(labels))
    n_baseline, n_canary = (int(n) for n in counts.sum(axis=1))
    statistic, p_value, cramers_v = math.nan, None, math.nan
    details: dict[str, float] = {}
    verdict: Verdict = "pass"
    reason = ""
    if n_baseline and n_canary:
        keep = counts.sum(axis=0) > 0
        labels = [label for label, kept in zip(labels, keep.tolist(), strict=True) if kept]
        counts = counts[:, keep]
        shares = counts / counts.sum(axis=1, keepdims=True)
        share_diff = shares[1] - shares[0]
        largest = int(np.argmax(np.abs(share_diff)))
        details = {"n_categories": float(len(labels)), "max_share_diff": float(share_diff[largest])}
        if len(labels) == 1:
            statistic, p_value, cramers_v = 0.0, 1.0, 0.0
            details["dof"] = 0.0
        else:
            statistic, p_value, dof = pearson_chi2(counts)
            cramers_v = math.sqrt(statistic / float(counts.sum()))  # min(2, k) - 1 == 1
            details["dof"] = float(dof)
        summary = f"chi2={statistic:.3g}, dof={int(details['dof'])}, Cramer's V={cramers_v:.3f}"
        if p_value < alpha:
            verdict = "fail"
            label = repr(labels[largest])[:40]
            reason = (
                f"canary category mix differs from baseline ({summary}; largest change "
                f"{label} {shares[1][largest]:.1%} vs {shares[0][largest]:.1%}), "
                f"{fmt_p(p_value, alpha)}"
            )
        else:
            reason = (
                f"no significant difference between canary and baseline category mix "
                f"({summary}), {fmt_p(p_value, alpha)}"
            )
    return make_result(
        gate=gate,
        test="chi_square",
        statistic=statistic,
        p_value=p_value,
        effect_size=cramers_v,
        threshold=alpha,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=min_n,
        unit=_UNIT,
        verdict=verdict,
        reason=reason,
        details=details,
    )


def output_drift(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    method: DriftMethod = "auto",
    alpha: float = 0.05,
    psi_threshold: float = 0.2,
    min_n: int = 30,
    gate: str = "output_drift",
    tau: float = MEAN_SHIFT_TAU,
) -> GateResult:
    """Run the drift test `method` names; ``"auto"`` picks chi-square or KS from the values.

    `alpha` is the level of the tests with a p-value (ks, chi_square, anderson, mean_shift);
    `psi_threshold` the threshold of the distances (psi, wasserstein, jensen_shannon).

    Values count as categorical when their dtype is not floating point (ints, bools, strings,
    objects), or when they are floats with at most 10 distinct values, all whole numbers.
    """
    if method not in DRIFT_METHODS:
        raise ValueError(f"method must be one of {DRIFT_METHODS}, got {method!r}")
    check_alpha(alpha)
    check_bound(psi_threshold, "psi_threshold", minimum=0.0, strict=True)
    baseline_values = as_1d(baseline, "baseline")
    canary_values = as_1d(canary, "canary")
    if method == "auto":
        method = "chi_square" if _is_categorical(baseline_values, canary_values) else "ks"
    if method == "chi_square":
        return chi_square_test(baseline_values, canary_values, alpha=alpha, min_n=min_n, gate=gate)
    if method == "psi":
        return psi(baseline_values, canary_values, threshold=psi_threshold, min_n=min_n, gate=gate)
    if method == "mean_shift":
        return mean_shift_test(
            baseline_values, canary_values, alpha=alpha, tau=tau, min_n=min_n, gate=gate
        )
    if method in ("wasserstein", "jensen_shannon", "anderson"):
        level = alpha if method == "anderson" else psi_threshold
        return _column_gate(method, baseline_values, canary_values, level, min_n, gate)
    return ks_test(baseline_values, canary_values, alpha=alpha, min_n=min_n, gate=gate)


def _is_categorical(baseline: npt.NDArray[np.generic], canary: npt.NDArray[np.generic]) -> bool:
    kinds = {baseline.dtype.kind, canary.dtype.kind}
    if not kinds <= set("biuf") or "f" not in kinds:
        return True
    distinct = np.unique(np.concatenate([baseline, canary]).astype(np.float64))
    return distinct.size <= MAX_CATEGORICAL_FLOAT_VALUES and bool(
        np.all(distinct == np.round(distinct))
    )


def _column_gate(
    method: str,
    baseline: npt.NDArray[np.generic],
    canary: npt.NDArray[np.generic],
    threshold: float,
    min_n: int,
    gate: str,
) -> GateResult:
    min_n, gate = check_min_n(min_n), check_gate(gate)
    drift = None
    if baseline.size and canary.size:
        drift = column_drift(baseline, canary, method=method, threshold=threshold)
    verdict: Verdict = "fail" if drift is not None and drift.drifted else "pass"
    if drift is None:
        reason = ""
    elif drift.p_value is None:
        relation = ">=" if drift.drifted else "<"
        reason = f"{method} {drift.statistic:.4g} {relation} threshold {threshold:g}"
    else:
        reason = f"{method} statistic {drift.statistic:.4g}, {fmt_p(drift.p_value, threshold)}"
    return make_result(
        gate=gate,
        test=method,
        statistic=math.nan if drift is None else drift.statistic,
        p_value=None if drift is None else drift.p_value,
        effect_size=math.nan if drift is None else drift.effect_size,
        threshold=threshold,
        n_baseline=int(baseline.size),
        n_canary=int(canary.size),
        min_n=min_n,
        unit=_UNIT,
        verdict=verdict,
        reason=reason,
        details={},
    )
