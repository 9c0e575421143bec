"""Population stability index (PSI): how far the canary's outputs moved from the baseline's bins.

`psi` cuts bins at baseline quantiles (`psi_edges`, or ``edges`` stored from an earlier
baseline), counts each arm's numeric outputs per bin, and hands the counts to `psi_counts`:
sum over bins of (canary share - baseline share) * ln(canary share / baseline share), shares
clipped at 1e-4. It fails when PSI > threshold; there is no p-value. Parameters are validated
(``ValueError``); fewer than `min_n` values in an arm gives ``inconclusive``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitors._bins import PSI_MIN_SHARE, check_bins, psi_edges
from monitors._validate import FloatArray, as_numeric, check_bound, check_gate, check_min_n
from monitors._verdict import make_result
from monitors.names import Verdict
from monitors.results import GateResult
from monitors.twosample import bin_counts

_UNIT = "observations"


def psi(
    baseline: npt.ArrayLike,
    canary: npt.ArrayLike,
    *,
    bins: int = 10,
    threshold: float = 0.2,
    min_n: int = 30,
    gate: str = "output_drift",
    edges: npt.ArrayLike | None = None,
) -> GateResult:
    """Population stability index of the canary against baseline-quantile bins.

    Pass `edges` (from `psi_edges` on an earlier baseline) to reuse stored bins.
    """
    bins = check_bins(bins)
    baseline_values = as_numeric(baseline, "baseline")
    canary_values = as_numeric(canary, "canary")
    if baseline_values.size and canary_values.size:
        cut = psi_edges(baseline_values, bins) if edges is None else _check_edges(edges)
        counts = bin_counts(baseline_values, cut), bin_counts(canary_values, cut)
    else:  # an empty arm: only the sizes matter (inconclusive)
        counts = np.array([baseline_values.size]), np.array([canary_values.size])
    return psi_counts(*counts, threshold=threshold, min_n=min_n, gate=gate)


def psi_counts(
    baseline_counts: npt.ArrayLike,
    canary_counts: npt.ArrayLike,
    *,
    threshold: float = 0.2,
    min_n: int = 30,
    gate: str = "output_drift",
) -> GateResult:
    """`psi` on bin counts of the two arms over the same baseline-quantile bins."""
    threshold = check_bound(threshold, "threshold", minimum=0.0, strict=True)
    min_n, gate = check_min_n(min_n), check_gate(gate)
    b = np.asarray(baseline_counts, dtype=np.float64)
    c = np.asarray(canary_counts, dtype=np.float64)
    n_baseline, n_canary = int(b.sum()), int(c.sum())
    value = math.nan
    details: dict[str, float] = {}
    verdict: Verdict = "pass"
    reason = ""
    if n_baseline and n_canary:
        baseline_share = np.clip(b / n_baseline, PSI_MIN_SHARE, None)
        canary_share = np.clip(c / n_canary, PSI_MIN_SHARE, None)
        terms = (canary_share - baseline_share) * np.log(canary_share / baseline_share)
        value = float(terms.sum())
        details = {"n_bins": float(terms.size), "max_bin_term": float(terms.max())}
        binning = f"over {terms.size} baseline-quantile bins"
        if value > threshold:
            verdict = "fail"
            reason = (
                f"canary output distribution shifted from baseline: "
                f"PSI {value:.3f} > threshold {threshold:g} {binning}"
            )
        else:
            reason = (
                f"canary output distribution stable: PSI {value:.3f} <= {threshold:g} {binning}"
            )
    return make_result(
        gate=gate,
        test="psi",
        statistic=value,
        p_value=None,
        effect_size=value,
        threshold=threshold,
        n_baseline=n_baseline,
        n_canary=n_canary,
        min_n=min_n,
        unit=_UNIT,
        verdict=verdict,
        reason=reason,
        details=details,
    )


def _check_edges(edges: npt.ArrayLike) -> FloatArray:
    cut = np.asarray(edges, dtype=np.float64)
    if cut.ndim != 1 or cut.size < 2 or np.any(np.diff(cut) <= 0):
        raise ValueError("edges must be >= 2 strictly increasing values (from psi_edges)")
    return cut
