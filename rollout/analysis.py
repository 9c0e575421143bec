"""Step analysis: two arms' samples + the spec's gates → per-gate results and one verdict.

The canary is compared with the baseline serving at the same time (both :class:`ArmSample`
come from the same window of the prediction log). Each gate the spec lists runs the matching
``monitors`` test:

- ``error_rate``: two-proportion test on errors / requests (``max_increase``);
- ``latency``: Mann-Whitney + quantile ratio on request latencies (``quantile``, ``max_ratio``);
- ``output_drift``: the spec's ``method`` on the predicted values; ``threshold`` is the
  threshold of the distances (PSI, Wasserstein, Jensen-Shannon), ``analysis.alpha`` the level of
  KS / chi-square / Anderson-Darling / mean_shift;
- ``quality``: ``metric`` (accuracy, auc, log_loss, mae, rmse) of outputs against delayed
  labels (``max_decrease`` for accuracy/auc, ``max_increase`` for the losses, ``min_labels``).

With ``analysis.sequential: true`` (the default) error_rate, latency and quality use
always-valid (mSPRT) p-values, so the manager may look after every batch and a healthy canary is
still rolled back with probability at most ``alpha`` per step; a gate's own ``sequential: false``
turns it off for that gate. With ``analysis.correction: holm`` (the default) the p-value gates
are re-run at their Holm step-down levels, so several gates together keep the false-rollback
rate at ``alpha`` (Holm is monotone in the p-values, so it stays valid with always-valid ones).

`write_drift_report` renders the Evidently HTML drift report of the two arms' outputs (and
input features, when given) to a file, for the manager to store beside the analysis.
Verdicts combine as: any fail → fail; else any inconclusive → inconclusive; else pass.
(Which steps are judged at all, and how, is :func:`rollout.machine.decide`'s rule.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from monitors import GateResult, Verdict, auc_test, error_rate_test, latency_test, output_drift
from monitors.drift import chi_square_table, mean_shift_moments, psi_counts
from monitors.names import ARMS
from monitors.quality import ACCURACY_TAU, AUC_TAU, accuracy_counts_test, loss_moments_test
from monitors.streaming import CategoryCounts
from rollout.lifecycle import StepEvidence
from rollout.spec import (
    AnalysisSpec,
    ErrorRateEntry,
    ErrorRateGate,
    GateEntry,
    GateName,
    LatencyEntry,
    LatencyGate,
    OutputDriftEntry,
    OutputDriftGate,
    QualityGate,
)
from rollout.store.predictions import ArmSample
from rollout.summary import (
    RESERVOIR_CAP,
    LabelSummary,
    OutputSummary,
    WindowSummary,
    category,
    is_number,
)

if TYPE_CHECKING:
    import pandas as pd

GateRunner = Callable[[float], GateResult]


def analyse(
    samples: Mapping[str, ArmSample] | WindowSummary,
    analysis: AnalysisSpec,
    *,
    weight_pct: int,
    step_index: int | None = None,
    window_start: float | None = None,
) -> StepEvidence:
    """The evidence of one look at a step: gate results, verdict, counts."""
    summary = _summary(samples)
    results = summary_gate_results(summary, analysis)
    verdict = combine(results)
    reason = summarise(results, verdict)
    return StepEvidence(
        verdict=verdict,
        gates=tuple(results),
        reason=reason,
        n_baseline=summary.counts("baseline").n_requests,
        n_canary=summary.counts("canary").n_requests,
        step_index=step_index,
        weight_pct=weight_pct,
        window_start=window_start,
    )


def gate_results(
    baseline: ArmSample, canary: ArmSample, analysis: AnalysisSpec
) -> list[GateResult]:
    """One result per gate of the spec, in spec order, from two raw samples."""
    return summary_gate_results(_summary({"baseline": baseline, "canary": canary}), analysis)


def summary_gate_results(summary: WindowSummary, analysis: AnalysisSpec) -> list[GateResult]:
    """One result per gate of the spec, in spec order (Holm-corrected if configured)."""
    runners = [(entry.name, _runner(entry, summary, analysis)) for entry in analysis.gates]
    results = [_safe(name, run, analysis.alpha) for name, run in runners]
    if analysis.correction == "holm":
        levels = holm_levels([r.p_value for r in results], analysis.alpha)
        results = [
            _safe(name, run, level) if level is not None and level != analysis.alpha else result
            for (name, run), result, level in zip(runners, results, levels, strict=True)
        ]
    return results


def _summary(samples: Mapping[str, ArmSample] | WindowSummary) -> WindowSummary:
    return samples if isinstance(samples, WindowSummary) else WindowSummary.from_samples(samples)


def combine(results: Sequence[GateResult]) -> Verdict:
    verdicts = {result.verdict for result in results}
    if "fail" in verdicts:
        return "fail"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


def summarise(results: Sequence[GateResult], verdict: Verdict) -> str:
    if not results:
        return "no gates configured"
    if verdict == "pass":
        return f"all {len(results)} gates pass"
    chosen = [r for r in results if r.verdict == verdict]
    return "; ".join(f"{r.gate} {verdict}: {r.reason}" for r in chosen)


def holm_levels(p_values: Sequence[float | None], alpha: float) -> list[float | None]:
    """Per-test significance level of Holm's step-down procedure.

    Sorted ascending, the i-th p-value (0-based, of k) is tested at ``alpha / (k - i)`` until
    the first one that is not rejected; that level applies to every later one too, so a test
    rejects exactly when Holm rejects it. Tests without a p-value get None.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    k = len(indexed)
    levels: list[float | None] = [None] * len(p_values)
    stopped: float | None = None
    for rank, (p_value, index) in enumerate(indexed):
        level = alpha / (k - rank) if stopped is None else stopped
        if stopped is None and p_value >= level:
            stopped = level
        levels[index] = level
    return levels


def _safe(name: GateName, run: GateRunner, alpha: float) -> GateResult:
    """Run a gate; a gate that cannot run on these data is inconclusive, saying why."""
    try:
        return run(alpha)
    except ValueError as exc:
        return GateResult.unmeasured(
            name, "not_run", "inconclusive", f"cannot run on these data: {exc}"
        )


def _runner(entry: GateEntry, summary: WindowSummary, analysis: AnalysisSpec) -> GateRunner:
    """The gate's test on this window, with the settings of its spec entry."""
    baseline, canary = summary.counts("baseline"), summary.counts("canary")
    if isinstance(entry, ErrorRateEntry):
        error_rate = entry.error_rate
        return lambda alpha: error_rate_test(
            baseline.n_errors,
            baseline.n_requests,
            canary.n_errors,
            canary.n_requests,
            max_increase=error_rate.max_increase,
            alpha=alpha,
            min_n=error_rate.min_n,
            sequential=_sequential(error_rate, analysis),
            tau=error_rate.tau,
            power=error_rate.power,
            require_power=error_rate.require_power,
        )
    if isinstance(entry, LatencyEntry):
        gate, latency = entry.latency, summary.latency
        return lambda alpha: latency_test(
            latency.values("baseline"),
            latency.values("canary"),
            quantile=gate.quantile,
            max_ratio=gate.max_ratio,
            alpha=alpha,
            min_n=gate.min_n,
            sequential=_sequential(gate, analysis),
            tau=gate.tau,
            binned=None if latency.exact else latency.bins,
        )
    if isinstance(entry, OutputDriftEntry):
        return lambda alpha: _output_drift(summary.outputs, entry.output_drift, alpha)
    return _quality_runner(entry.quality, summary.labels, _sequential(entry.quality, analysis))


def _output_drift(outputs: OutputSummary, gate: OutputDriftGate, alpha: float) -> GateResult:
    """The spec's drift method on the outputs: exact while the reservoirs hold every value."""
    numeric = outputs.numeric
    if outputs.all_numeric and numeric.exact:
        values = [numeric.values(arm) for arm in ARMS]
        if outputs.all_int:
            values = [v.astype(np.int64) for v in values]
        return output_drift(
            *values,
            method=gate.method,
            psi_threshold=gate.threshold,
            tau=gate.tau,
            alpha=alpha,
            min_n=gate.min_n,
        )
    if outputs.categorical and not outputs.categories_complete:
        raise ValueError("the outputs mix continuous numbers with other values")
    if outputs.categorical and gate.method in ("auto", "chi_square"):
        labels, table = outputs.categories.table()
        return chi_square_table(labels, table, alpha=alpha, min_n=gate.min_n)
    if outputs.categorical:  # another method on categories: a sample with the same shares
        values = [_category_sample(outputs.categories, arm) for arm in ARMS]
        return _sampled(
            output_drift(
                *values,
                method=gate.method,
                psi_threshold=gate.threshold,
                alpha=alpha,
                min_n=gate.min_n,
            ),
            outputs,
        )
    if gate.method == "mean_shift":
        moments = numeric.moments
        return mean_shift_moments(
            moments["baseline"], moments["canary"], tau=gate.tau, alpha=alpha, min_n=gate.min_n
        )
    if gate.method == "psi" and numeric.bins is not None:
        bins = numeric.bins
        return psi_counts(
            bins.baseline_counts, bins.canary_counts, threshold=gate.threshold, min_n=gate.min_n
        )
    values = [numeric.values(arm) for arm in ARMS]
    result = output_drift(
        *values, method=gate.method, psi_threshold=gate.threshold, alpha=alpha, min_n=gate.min_n
    )
    return _sampled(result, outputs)


def _sampled(result: GateResult, outputs: OutputSummary) -> GateResult:
    n_b, n_c = outputs.n("baseline"), outputs.n("canary")
    return replace(
        result,
        reason=f"{result.reason} (on a uniform sample of at most {RESERVOIR_CAP:,} outputs per "
        f"arm, of {n_b:,} baseline and {n_c:,} canary)",
        details={**result.details, "sampled": 1.0, "n_baseline_total": float(n_b)}
        | {"n_canary_total": float(n_c)},
    )


def _category_sample(categories: CategoryCounts, arm: str) -> npt.NDArray[Any]:
    """The arm's category labels, scaled down to at most RESERVOIR_CAP with the same shares."""
    counts = categories.counts[arm]
    total = sum(counts.values())
    scale = min(1.0, RESERVOIR_CAP / total) if total else 1.0
    labels = list(counts)
    repeats = [max(1, round(counts[label] * scale)) for label in labels]
    return np.repeat(np.asarray(labels, dtype=object), repeats)


def _quality_runner(gate: QualityGate, labels: LabelSummary, sequential: bool) -> GateRunner:
    if gate.metric == "accuracy":
        accuracy_tau = ACCURACY_TAU if gate.tau is None else float(gate.tau)
        return lambda alpha: accuracy_counts_test(
            labels.correct["baseline"],
            labels.labelled["baseline"],
            labels.correct["canary"],
            labels.labelled["canary"],
            max_decrease=gate.max_decrease,
            alpha=alpha,
            min_n=gate.min_labels,
            sequential=sequential,
            tau=accuracy_tau,
            power=gate.power,
            require_power=gate.require_power,
        )
    metric = gate.metric

    def run(alpha: float) -> GateResult:
        if metric == "auc":
            return _auc(labels, gate, alpha, sequential)
        if metric in labels.loss_errors:
            raise ValueError(labels.loss_errors[metric])
        moments = labels.losses[metric]
        return loss_moments_test(
            moments["baseline"],
            moments["canary"],
            metric=metric,
            max_increase=gate.max_increase,
            alpha=alpha,
            min_n=gate.min_labels,
            sequential=sequential,
            tau=gate.tau,
        )

    return run


def _auc(labels: LabelSummary, gate: QualityGate, alpha: float, sequential: bool) -> GateResult:
    if labels.auc_error is not None:
        raise ValueError(labels.auc_error)
    arms = []
    for arm in ARMS:
        negatives, positives = (labels.scores[label].values(arm) for label in (False, True))
        scores = np.concatenate([negatives, positives])
        truth = np.concatenate([np.zeros(negatives.size, bool), np.ones(positives.size, bool)])
        arms.extend([scores, truth])
    result = auc_test(
        *arms,
        max_decrease=gate.max_decrease,
        alpha=alpha,
        min_n=gate.min_labels,
        sequential=sequential,
        tau=AUC_TAU if gate.tau is None else float(gate.tau),
    )
    if all(stream.exact for stream in labels.scores.values()):
        return result
    return replace(
        result,
        reason=f"{result.reason} (on a uniform sample of at most {RESERVOIR_CAP:,} labelled "
        "predictions per class and arm)",
        details={**result.details, "sampled": 1.0},
    )


def _sequential(gate: ErrorRateGate | LatencyGate | QualityGate, analysis: AnalysisSpec) -> bool:
    """The gate's own ``sequential`` setting, else the analysis-wide default."""
    return bool(analysis.sequential if gate.sequential is None else gate.sequential)


def write_drift_report(
    baseline: ArmSample,
    canary: ArmSample,
    path: str | Path,
    *,
    baseline_features: pd.DataFrame | None = None,
    canary_features: pd.DataFrame | None = None,
) -> Path:
    """Write the Evidently HTML drift report of canary vs baseline to `path`; return the path.

    The report covers the predicted values (column ``output``; one per predicted row, numbers
    as numbers, anything else as text) and, when given, the input features of each arm (frames
    with the same columns, one row per request). Raises ``ValueError`` when an arm has no rows.
    """
    import pandas as pd

    from monitors.reports import drift_report_html

    arms = (("baseline", baseline, baseline_features), ("canary", canary, canary_features))
    frames = [
        pd.DataFrame(index=range(len(sample.outputs)))
        if features is None
        else features.reset_index(drop=True).copy()
        for _, sample, features in arms
    ]
    # The output column goes in when every arm has one output per row of its frame.
    if all(
        sample.outputs and len(sample.outputs) == len(frame)
        for (_, sample, _), frame in zip(arms, frames, strict=True)
    ):
        outputs = _comparable(baseline.outputs, canary.outputs)
        for frame, values in zip(frames, outputs, strict=True):
            frame["output"] = values
    for (arm, _, _), frame in zip(arms, frames, strict=True):
        if frame.empty or not len(frame.columns):
            raise ValueError(f"{arm} has no outputs or features to report on")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(drift_report_html(frames[0], frames[1]), encoding="utf-8")
    return target


def _comparable(
    baseline: Sequence[object], canary: Sequence[object]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Outputs as numbers when every one is a number, otherwise as category strings."""
    if all(is_number(v) for v in [*baseline, *canary]):
        return np.asarray(baseline), np.asarray(canary)
    return (
        np.asarray([category(v) for v in baseline], dtype=object),
        np.asarray([category(v) for v in canary], dtype=object),
    )
