"""The evidence of a shadow step: paired outputs of the baseline and the mirrored candidate.

:func:`shadow_evidence` runs the spec's paired test from :mod:`monitors.shadow` on the pairs
:meth:`~rollout.store.predictions.PredictionLog.paired` returns (``n_canary`` = pairs, which
the step's ``min_requests`` counts). Two are safety tests with anytime-valid bounds, so the
step may be looked at as often as the manager likes: ``disagreement`` passes only when the
share of requests whose outputs differ is proven at most ``max_disagreement``, and fails once
it is proven above; ``wilcoxon`` (numeric outputs) passes only when the median shift of the
paired outputs is proven within ``max_shift`` (a sign test with a margin), and fails once it
is proven beyond; ``mcnemar`` (labelled pairs) passes only when the candidate's accuracy is
proven at most ``max_decrease`` below the baseline's on the same requests, and fails once it
is proven further below. The reason ends with the
recommendation the rollout waits on (``then: stop``) or continues with (``then: canary``).
"""

from __future__ import annotations

from collections.abc import Sequence

from monitors import GateResult
from monitors.shadow import disagreement_safety, paired_accuracy_safety, paired_shift_safety
from rollout.lifecycle import StepEvidence
from rollout.spec import RolloutSpec


def shadow_evidence(
    pairs: Sequence[tuple[object, object, object | None]],
    spec: RolloutSpec,
    *,
    step_index: int,
    window_start: float,
) -> StepEvidence:
    shadow = spec.strategy.shadow
    assert shadow is not None, "a shadow step needs strategy.shadow"
    alpha = spec.analysis.alpha
    min_n = max(1, shadow.min_requests)
    result: GateResult
    if shadow.test == "mcnemar":
        labelled = [(b, s, y) for b, s, y in pairs if y is not None]
        result = paired_accuracy_safety(
            [b == y for b, _, y in labelled],
            [s == y for _, s, y in labelled],
            max_decrease=shadow.max_decrease,
            alpha=alpha,
            n_opt=10 * min_n,
        )
    elif shadow.test == "wilcoxon":
        result = paired_shift_safety(
            [_number(b) for b, _, _ in pairs],
            [_number(s) for _, s, _ in pairs],
            max_shift=shadow.max_shift,
            alpha=alpha,
            n_opt=10 * min_n,
        )
    else:
        result = disagreement_safety(
            [str(b) for b, _, _ in pairs],
            [str(s) for _, s, _ in pairs],
            max_rate=shadow.max_disagreement,
            alpha=alpha,
            n_opt=10 * min_n,
        )
    if result.verdict == "pass":
        follow = "continue as a canary" if shadow.then == "canary" else "promote"
        reason = f"{result.reason}; recommendation: {follow}"
    elif result.verdict == "fail":
        reason = f"{result.reason}; recommendation: do not promote"
    else:
        reason = result.reason
    return StepEvidence(
        verdict=result.verdict,
        gates=(result,),
        n_baseline=len(pairs),
        n_canary=len(pairs),
        reason=reason,
        step_index=step_index,
        weight_pct=0,
        window_start=window_start,
    )


def _number(value: object) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, int | float | str):
        return float(value)
    raise ValueError(f"shadow test wilcoxon needs numeric outputs, got {value!r:.80}")
