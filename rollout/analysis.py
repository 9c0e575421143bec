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
At 100% canary no baseline serves at the same time, so the gates are not judged there.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from monitors import (
    GateResult,
    accuracy_test,
    auc_test,
    error_rate_test,
    latency_test,
    loss_test,
    output_drift,
    per_request_loss,
)
from monitors.quality import ACCURACY_TAU
from monitors.reports import drift_report_html
from rollout.machine import StepEvidence, Verdict
from rollout.spec import AnalysisSpec, GateName
from rollout.store.predictions import ArmSample

GateRunner = Callable[[float], GateResult]


def analyse(
    samples: Mapping[str, ArmSample],
    analysis: AnalysisSpec,
    *,
    weight_pct: int,
    step_index: int | None = None,
    window_start: float | None = None,
) -> StepEvidence:
    """The evidence of one look at a step: gate results, verdict, counts."""
    baseline = samples.get("baseline") or ArmSample(arm="baseline")
    canary = samples.get("canary") or ArmSample(arm="canary")
    if weight_pct >= 100:
        verdict: Verdict = "pass"
        results: list[GateResult] = []
        reason = "canary serves 100%: no baseline at the same time, gates not judged"
    else:
        results = gate_results(baseline, canary, analysis)
        verdict = combine(results)
        reason = summarise(results, verdict)
    return StepEvidence(
        verdict=verdict,
        gates=tuple(results),
        reason=reason,
        n_baseline=baseline.n_requests,
        n_canary=canary.n_requests,
        step_index=step_index,
        weight_pct=weight_pct,
        window_start=window_start,
    )


def gate_results(
    baseline: ArmSample, canary: ArmSample, analysis: AnalysisSpec
) -> list[GateResult]:
    """One result per gate of the spec, in spec order (Holm-corrected if configured)."""
    runners = [
        (entry.name, _runner(entry.name, baseline, canary, analysis)) for entry in analysis.gates
    ]
    results = [_safe(name, run, analysis.alpha) for name, run in runners]
    if analysis.correction == "holm":
        levels = holm_levels([r.p_value for r in results], analysis.alpha)
        results = [
            _safe(name, run, level) if level is not None and level != analysis.alpha else result
            for (name, run), result, level in zip(runners, results, levels, strict=True)
        ]
    return results


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


def _runner(
    name: GateName, baseline: ArmSample, canary: ArmSample, analysis: AnalysisSpec
) -> GateRunner:
    gate = analysis.gate(name)
    if name == "error_rate":
        return lambda alpha: error_rate_test(
            baseline.n_errors,
            baseline.n_requests,
            canary.n_errors,
            canary.n_requests,
            max_increase=gate.max_increase,
            alpha=alpha,
            min_n=gate.min_n,
            sequential=_sequential(gate, analysis),
            tau=gate.tau,
            power=gate.power,
            require_power=gate.require_power,
        )
    if name == "latency":
        return lambda alpha: latency_test(
            baseline.latencies_ms,
            canary.latencies_ms,
            quantile=gate.quantile,
            max_ratio=gate.max_ratio,
            alpha=alpha,
            min_n=gate.min_n,
            sequential=_sequential(gate, analysis),
            tau=gate.tau,
        )
    if name == "output_drift":
        baseline_values, canary_values = _comparable(baseline.outputs, canary.outputs)
        return lambda alpha: output_drift(
            baseline_values,
            canary_values,
            method=gate.method,
            alpha=alpha,
            psi_threshold=gate.threshold,
            min_n=gate.min_n,
            tau=gate.tau,
        )
    return _quality_runner(gate, baseline, canary, _sequential(gate, analysis))


def _quality_runner(
    gate: Any, baseline: ArmSample, canary: ArmSample, sequential: bool
) -> GateRunner:
    if gate.metric == "accuracy":
        baseline_correct = [_same(output, label) for output, label in baseline.labelled]
        canary_correct = [_same(output, label) for output, label in canary.labelled]
        accuracy_tau = ACCURACY_TAU if gate.tau is None else float(gate.tau)
        return lambda alpha: accuracy_test(
            np.asarray(baseline_correct, dtype=bool),
            np.asarray(canary_correct, dtype=bool),
            max_decrease=gate.max_decrease,
            alpha=alpha,
            min_n=gate.min_labels,
            sequential=sequential,
            tau=accuracy_tau,
            power=gate.power,
            require_power=gate.require_power,
        )
    tau = {} if gate.tau is None else {"tau": gate.tau}

    def run(alpha: float) -> GateResult:
        baseline_out, baseline_labels = _numeric_pairs(baseline.labelled)
        canary_out, canary_labels = _numeric_pairs(canary.labelled)
        if gate.metric == "auc":
            return auc_test(
                baseline_out,
                baseline_labels,
                canary_out,
                canary_labels,
                max_decrease=gate.max_decrease,
                alpha=alpha,
                min_n=gate.min_labels,
                sequential=sequential,
                **tau,
            )
        return loss_test(
            per_request_loss(gate.metric, baseline_out, baseline_labels),
            per_request_loss(gate.metric, canary_out, canary_labels),
            metric=gate.metric,
            max_increase=gate.max_increase,
            alpha=alpha,
            min_n=gate.min_labels,
            sequential=sequential,
            **tau,
        )

    return run


def _sequential(gate: Any, analysis: AnalysisSpec) -> bool:
    """The gate's own ``sequential`` setting, else the analysis-wide default."""
    return bool(analysis.sequential if gate.sequential is None else gate.sequential)


def _numeric_pairs(
    labelled: Sequence[tuple[object, object]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(output, label) pairs as two float arrays; a one-element list output is unwrapped."""
    outputs, labels = [], []
    for output, label in labelled:
        if isinstance(output, list) and len(output) == 1:
            output = output[0]
        if not (_is_number(output) or isinstance(output, bool)) or not (
            _is_number(label) or isinstance(label, bool)
        ):
            raise ValueError(
                f"this quality metric needs numeric outputs and labels, got {output!r}, {label!r}"
            )
        outputs.append(float(output))  # type: ignore[arg-type]
        labels.append(float(label))  # type: ignore[arg-type]
    return np.asarray(outputs, dtype=np.float64), np.asarray(labels, dtype=np.float64)


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


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _comparable(
    baseline: Sequence[object], canary: Sequence[object]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Outputs as numbers when every one is a number, otherwise as category strings."""
    if all(_is_number(v) for v in [*baseline, *canary]):
        return np.asarray(baseline), np.asarray(canary)
    return (
        np.asarray([_category(v) for v in baseline], dtype=object),
        np.asarray([_category(v) for v in canary], dtype=object),
    )


def _category(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _same(output: object, label: object) -> bool:
    """A prediction equals its label: numerically for numbers, else as text."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    if isinstance(output, numbers.Real) and isinstance(label, numbers.Real):
        return float(output) == float(label)
    return _category(output) == _category(label)
