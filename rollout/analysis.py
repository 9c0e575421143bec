"""A look at a step: the judge's gates over the window, their combined verdict, the counts;
and the Evidently drift report people read beside it.

:func:`analyse` runs :func:`rollout.judge.judge` on a window (a
:class:`~rollout.summary.WindowSummary`, or raw per-arm samples) and combines the blocking
gates' verdicts: any fail → fail; all passed → pass; else inconclusive (keep watching). Which
steps are judged at all, and how, is :func:`rollout.machine.decide`'s rule.
:func:`analyse_alone` does the same at a step where the candidate serves alone (100%): its SLO
and its history against the baseline's window before the switch.

:func:`write_drift_report` renders the Evidently HTML drift report of the two arms' outputs (and
input features, when given) to a file, for the manager to store beside the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from monitors import GateResult, Verdict
from monitors.features import FeatureCounts
from rollout.judge import (
    Inputs,
    Look,
    canary_requests,
    combine,
    combine_alone,
    judge,
    judge_alone,
)
from rollout.lifecycle import StepEvidence
from rollout.spec import AnalysisSpec
from rollout.store.predictions import ArmSample
from rollout.summary import WindowSummary, category, is_number

if TYPE_CHECKING:
    import pandas as pd


def analyse(
    samples: Mapping[str, ArmSample] | WindowSummary,
    analysis: AnalysisSpec,
    *,
    weight_pct: int,
    step_index: int | None = None,
    window_start: float | None = None,
    randomised: bool = True,
    inputs: Inputs | None = None,
) -> StepEvidence:
    """The evidence of one look: gate results, verdict, counts (``randomised``: the arms were
    assigned by the traffic split; False for a pinned preview; ``inputs``: the served features,
    for an ``input_drift`` gate)."""
    summary = _summary(samples)
    results = judge(Look(summary, randomised, inputs), analysis)
    verdict = combine(results)
    return StepEvidence(
        verdict=verdict,
        gates=tuple(results),
        reason=summarise(results, verdict),
        n_baseline=summary.counts("baseline").n_requests,
        n_canary=summary.counts("canary").n_requests,
        step_index=step_index,
        weight_pct=weight_pct,
        window_start=window_start,
    )


def analyse_alone(
    summary: WindowSummary,
    analysis: AnalysisSpec,
    *,
    first_generation: int,
    weight_pct: int,
    step_index: int | None = None,
    window_start: float | None = None,
    quality: bool = False,
    inputs: Inputs | None = None,
    outputs: FeatureCounts | None = None,
) -> StepEvidence:
    """The evidence of one look at a step where the candidate serves alone (100%): its SLO
    and its history (:func:`rollout.judge.judge_alone`; ``quality``: accuracy too, in a
    watch); ``first_generation`` is the step's first plan generation in the window."""
    results = judge_alone(
        summary, first_generation, analysis, quality=quality, inputs=inputs, outputs=outputs
    )
    verdict = combine_alone(results, summary, first_generation)
    before, n_alone = canary_requests(summary, first_generation)
    reason = summarise(results, verdict)
    if verdict == "pass" and any(r.verdict != "pass" for r in results if r.blocking):
        reason = (
            f"the SLO passes; history: no regression proven over {n_alone:,} requests alone, "
            f"as many as the {before:,} before the switch"
        )
    return StepEvidence(
        verdict=verdict,
        gates=tuple(results),
        reason=reason,
        n_baseline=sum(
            g.requests["baseline"] for key, g in summary.groups.items() if key >= first_generation
        ),  # none: nothing is split
        n_canary=n_alone,
        step_index=step_index,
        weight_pct=weight_pct,
        window_start=window_start,
    )


def _summary(samples: Mapping[str, ArmSample] | WindowSummary) -> WindowSummary:
    return samples if isinstance(samples, WindowSummary) else WindowSummary.from_samples(samples)


def summarise(results: Sequence[GateResult], verdict: Verdict) -> str:
    """One line: which blocking gates decided (or still wait), and why."""
    deciding = [r for r in results if r.blocking]
    if not deciding:
        return "no blocking gates (gates: none, or all advisory)"
    if verdict == "pass":
        return f"all {len(deciding)} blocking gates pass"
    chosen = [r for r in deciding if r.verdict == verdict]
    return "; ".join(f"{r.gate} {verdict}: {r.reason}" for r in chosen)


def write_drift_report(
    baseline: ArmSample,
    canary: ArmSample,
    path: str | Path,
    *,
    baseline_features: pd.DataFrame | None = None,
    canary_features: pd.DataFrame | None = None,
    gates: Sequence[GateResult] = (),
) -> Path:
    """Write the Evidently HTML drift report of canary vs baseline to `path`; return the path.
    ``gates`` (the window's results) head it: the output-drift gate's distance, bounds and
    verdict, and Evidently reads the output column by the same distance.

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
    target.write_text(drift_report_html(frames[0], frames[1], gates), encoding="utf-8")
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
