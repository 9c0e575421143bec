"""The judge: every gate's effect with its anytime-valid bounds, and three outcomes.

At each look every gate of the spec gets a :class:`~monitors.results.GateResult` whose
``effect_size`` is the canary's effect in the gate's unit (canary minus baseline, or canary
over baseline), ``ci_low``/``ci_high`` its confidence bounds that hold at every look of the
rollout at once, ``threshold`` the margin the spec allows, and a verdict:

- **fail**: the bounds lie wholly beyond the margin (the canary is proven worse than allowed);
- **pass**: they lie wholly within it (proven not worse than allowed);
- **inconclusive**: neither yet; keep watching.

A blocking gate's fail rolls the rollout back at once; a step advances when every blocking gate
passes; advisory gates are reported and never decide. The rollout's ``alpha`` is split equally
among its blocking gates (``correction: none`` gives each the whole ``alpha``); each gate's
false fail and false pass are each at most its share, over every look and step of the rollout,
because its bounds are one confidence sequence over the rollout's whole window, not a test per
step. The constructions (:mod:`monitors.anytime`, :mod:`monitors.quantiles`):

- ``error_rate``: the canary may err at most ``max_ratio`` times the baseline's rate, or at most
  ``max_increase`` (absolute) above it, whichever allows more. Fail needs both the ratio (from
  the arm of each error, exact at any rate) and the difference proven beyond; pass needs
  either proven within. The difference's lower bound is the larger of the per-arm rate bounds'
  (alpha / 2) and the one the ratio's bound and the pooled rate give (one stream,
  :mod:`monitors.pooled`, alpha / 4 each): under the intersection-union rule the difference's
  proof may spend the gate's alpha whatever the ratio's does.
- ``latency``: the ``quantile`` of the canary's latencies over the baseline's, against
  ``max_ratio``. A pass from each arm's quantile bounds on the latency bins (alpha / 2 each);
  under a randomised split a fail from one stream of every request (:mod:`monitors.exceedances`:
  the canary's share of the requests above the pooled quantile, its latencies divided by
  ``max_ratio``, is at most its share of all under the null), e-values multiplied across plan
  generations; its lower bound is the largest ratio it rejects on a 2% grid. In a pinned
  preview (or a window without a split) the arms' bounds decide the fail too.
- ``quality`` (``accuracy``, ``log_loss``): the difference of means, from the AIPW stream of the
  randomised split (efficient, bounded), against ``max_decrease`` / ``max_increase``; ``auc``,
  ``mae`` and ``rmse`` have no bounded per-request form and are advisory.
- ``output_drift``: the total-variation distance of the category mix, or the KS distance of
  numeric outputs, against ``delta``; advisory unless the spec gives ``delta``. The upper
  bound (a pass) comes from the arms' own bounds; the lower bound (a fail), under a randomised
  split, from one AIPW stream per category (:mod:`monitors.mix`), or for numbers from the
  larger of the arms' DKW bound and the share difference at the baseline's median (a stream:
  the KS distance is at least it).

In a blue/green preview the candidate's requests are pinned by callers, not assigned at random:
only the per-arm bounds apply there (no ratio of events, no AIPW).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from monitors import GateResult
from monitors.anytime import (
    Bounds,
    EventSplit,
    MeanDifference,
    RateSearch,
    RatioSearch,
    rate_ratio_bounds,
    search_together,
)
from monitors.exceedances import exceedance_log_e, least_log_e
from monitors.features import FeatureCounts, InputDrift, input_drift
from monitors.mix import tv_distance_low
from monitors.names import Verdict
from monitors.pooled import PooledGroup, difference_low
from monitors.quantiles import (
    ks_distance_bounds,
    ks_distance_bounds_binned,
    quantile_bounds_cumulative,
    tv_distance_from,
    tv_distance_search,
)
from rollout.spec import (
    AnalysisSpec,
    ErrorRateGate,
    GateEntry,
    InputDriftEntry,
    InputDriftGate,
    LatencyGate,
    OutputDriftEntry,
    OutputDriftGate,
    QualityGate,
)
from rollout.summary import (
    LATENCY_BINS,
    LATENCY_EDGES,
    LATENCY_LOG_BIN_RATIO,
    GroupCounts,
    LabelSummary,
    WindowSummary,
)

DESIGN_REQUESTS = 5_000  # canary requests the bounds are tuned for (any value is valid)
DESIGN_EVENTS = 60  # errors the ratio's mixture is tuned for
LATENCY_INTERVAL = 0.1  # of a latency gate's alpha for a fail, to the mixture quantile's intervals
LATENCY_LOW_STEP = 1.02  # the grid of ratios a latency fail's lower bound is read on
KS_DKW_SHARE = 0.3  # of a KS gate's alpha for a fail, to the DKW bound (the rest to the cut)
ADVISORY_DELTA = 0.1  # the distance an advisory drift gate reports against


@dataclass(frozen=True)
class Look:
    """What one look at a rollout gives the judge: its window and how the arms were assigned."""

    summary: WindowSummary
    randomised: bool  # the traffic split assigned requests; False: a pinned preview
    inputs: Inputs | None = None  # the served features, for an input_drift gate


@dataclass(frozen=True)
class Inputs:
    """The features the arms served, counted on a reference's bins (``rollout.evidence``):
    ``canary`` is None when there is no reference, and ``why`` says why."""

    canary: FeatureCounts | None
    baseline: FeatureCounts | None = None
    source: str = ""  # what the reference is: "training reference (...)", "the baseline's ..."
    why: str = ""


def blocking(entry: GateEntry) -> bool:
    """A gate decides unless it is advisory (output drift without a ``delta`` is)."""
    settings = getattr(entry, entry.name)
    if isinstance(settings, OutputDriftGate):
        return settings.delta is not None and not settings.advisory
    if isinstance(settings, QualityGate) and settings.metric in ("auc", "mae", "rmse"):
        return False
    return not settings.advisory


def gate_alpha(analysis: AnalysisSpec) -> float:
    deciding = sum(blocking(entry) for entry in analysis.effective_gates)
    if analysis.correction == "none" or deciding <= 1:
        return analysis.alpha
    return analysis.alpha / deciding


# A gate's work at a look: it yields the Bernoulli searches it needs (possibly none), which the
# judge runs with every other gate's in one vectorised solve (each search ends as it would
# alone, monitors.anytime.search_together), and then returns its result.
GateRun = Generator[list[RateSearch | RatioSearch], None, GateResult]


@dataclass(frozen=True)
class _Mark:
    """What the judge tells each gate's result: whether it decides, and its alpha."""

    blocking: bool
    alpha: float


def judge(look: Look, analysis: AnalysisSpec) -> list[GateResult]:
    """One result per gate of the spec, in spec order."""
    alpha = gate_alpha(analysis)
    runs: list[GateRun] = []
    for entry in analysis.effective_gates:
        settings = getattr(entry, entry.name)
        mark = _Mark(blocking(entry), alpha)
        if isinstance(settings, ErrorRateGate):
            runs.append(_error_rate(look, settings, mark))
        elif isinstance(settings, LatencyGate):
            runs.append(_latency(look, settings, mark))
        elif isinstance(settings, QualityGate):
            runs.append(_quality(look, settings, mark))
        elif isinstance(settings, InputDriftGate):
            runs.append(_input_drift(look.inputs, settings, mark))
        else:
            runs.append(_output_drift(look, settings, mark))
    search_together([search for run in runs for search in next(run)])
    return [_finished(run) for run in runs]


def judge_alone(
    summary: WindowSummary,
    first_generation: int,
    analysis: AnalysisSpec,
    *,
    quality: bool = False,
    inputs: Inputs | None = None,
    outputs: FeatureCounts | None = None,
) -> list[GateResult]:
    """The gates of a step where the candidate serves alone (100%: a canary's last step, a
    blue/green bake, a linear rollout's last step), from the window's plan generations from
    ``first_generation`` on (the step's) and, for history, the ones before it. No baseline
    serves beside the candidate, so:

    - the SLO (``analysis.slo``, else ``DEFAULT_SLO``): the candidate's error rate (its
      failed requests, failovers included, over its requests) and its ``quantile`` latency,
      each against its bound with one arm's anytime-valid bounds;
    - history: the spec's blocking ``error_rate`` and ``latency`` gates, the candidate now
      against the baseline's requests of the earlier generations (when there are any), from
      each arm's bounds as in a pinned preview; marked historical (time-of-day effects are the
      risk). With ``quality`` (a watch), the spec's blocking ``quality`` gate on accuracy too:
      the candidate's labelled requests since ``first_generation`` against the baseline's
      before (labels arrive late, so a 100% step, which ends on its own evidence, leaves it
      out). Output drift is not judged here (outputs are not kept per generation).
    - the spec's ``input_drift`` gate, with ``inputs`` (the candidate's features since the
      switch, counted on the bins of its features before it), as ``input_drift_history``;
    - the spec's ``output_drift`` gate, with ``outputs`` (the candidate's outputs since the
      switch, counted on the bins of its outputs before it), as ``output_drift_history``: its
      outputs now against its own while it served beside the baseline
      (:func:`_output_history`).

    The phase has its own alpha, the spec's, split equally among these blocking gates."""
    now = [g for key, g in summary.groups.items() if key >= first_generation]
    before = [g for key, g in summary.groups.items() if key < first_generation]
    slo = analysis.effective_slo
    kinds: tuple[type, ...] = (ErrorRateGate, LatencyGate)
    history = [
        entry
        for entry in analysis.effective_gates
        if blocking(entry)
        and (
            isinstance(getattr(entry, entry.name), kinds)
            or (
                quality
                and isinstance(getattr(entry, entry.name), QualityGate)
                and getattr(entry, entry.name).metric == "accuracy"
                and any(g.labelled["baseline"] for g in before)
            )
        )
    ]
    if not any(g.requests["baseline"] for g in before):
        history = []
    drift = next((e for e in analysis.effective_gates if isinstance(e, InputDriftEntry)), None)
    moved = next((e for e in analysis.effective_gates if isinstance(e, OutputDriftEntry)), None)
    moved = moved if outputs is not None else None
    deciding = (slo.error_rate is not None) + (slo.latency is not None) + len(history)
    deciding += drift is not None and blocking(drift)
    deciding += moved is not None and blocking(moved)
    alpha = analysis.alpha
    if analysis.correction != "none" and deciding > 1:
        alpha /= deciding
    mark = _Mark(True, alpha)
    canary = _arm_of(now, "canary")
    runs: list[GateRun] = []
    if slo.error_rate is not None:
        runs.append(_slo_errors(canary, slo.error_rate.max, mark))
    if slo.latency is not None:
        runs.append(_slo_latency(canary, slo.latency.quantile, slo.latency.max_ms, mark))
    if history:
        past = _history_window(_arm_of(before, "baseline"), canary, summary.labels.min_share)
        for entry in history:
            settings = getattr(entry, entry.name)
            if isinstance(settings, ErrorRateGate):
                runs.append(_error_rate(Look(past, randomised=False), settings, mark))
            elif isinstance(settings, QualityGate):
                runs.append(_quality(Look(past, randomised=False), settings, mark))
            else:
                runs.append(_latency(Look(past, randomised=False), settings, mark))
    if drift is not None and inputs is not None:
        own = replace(mark, blocking=blocking(drift))
        runs.append(_input_drift(inputs, drift.input_drift, own, "input_drift_history"))
    if moved is not None and outputs is not None:
        gate, own = moved.output_drift, replace(mark, blocking=blocking(moved))
        runs.append(_output_history(outputs, gate, own))
    search_together([search for run in runs for search in next(run)])
    results = [_finished(run) for run in runs]
    kept = ("slo_", "input_", "output_drift_history")
    return [r if r.gate.startswith(kept) else _historical(r) for r in results]


def combine_alone(
    results: Sequence[GateResult], summary: WindowSummary, first_generation: int
) -> Verdict:
    """The verdict of a step where the candidate serves alone: any blocking fail → fail; a
    pass once every SLO gate passed and every history gate either passed or has watched the
    candidate alone for as many requests as it served before the switch (the history gates
    then stop holding the step: their fails are anytime-valid, but the baseline's window is
    fixed, so proving the candidate within a margin of it may take far longer than the
    comparison it continues); else inconclusive."""
    deciding = [r for r in results if r.blocking]
    if any(r.verdict == "fail" for r in deciding):
        return "fail"
    if not deciding:
        return "pass"
    before, alone = canary_requests(summary, first_generation)
    watched = alone >= before
    if all(r.verdict == "pass" or (watched and r.gate.endswith("_history")) for r in deciding):
        return "pass"
    return "inconclusive"


def canary_requests(summary: WindowSummary, first_generation: int) -> tuple[int, int]:
    """The candidate's requests before the plan generation ``first_generation``, and since."""
    before = alone = 0
    for key, group in summary.groups.items():
        if key < first_generation:
            before += group.requests["canary"]
        else:
            alone += group.requests["canary"]
    return before, alone


@dataclass(frozen=True)
class _ArmOf:
    """One arm's requests, errors and latency counts over some plan generations."""

    requests: int
    errors: int
    latency: npt.NDArray[np.int64]
    labelled: int = 0
    correct: int = 0


def _arm_of(groups: Sequence[GroupCounts], arm: str) -> _ArmOf:
    latency = np.zeros(LATENCY_BINS, dtype=np.int64)
    for group in groups:
        counts = group.latency.get(arm)
        if counts is not None:
            latency += counts
    return _ArmOf(
        sum(g.requests[arm] for g in groups),
        sum(g.errors[arm] for g in groups),
        latency,
        sum(g.labelled[arm] for g in groups),
        sum(g.correct[arm] for g in groups),
    )


def _history_window(baseline: _ArmOf, canary: _ArmOf, min_share: float) -> WindowSummary:
    """A window of the baseline's requests before the switch and the candidate's since."""
    past = WindowSummary(labels=LabelSummary(min_share=min_share))
    bins = past.latency.bins
    assert bins is not None
    for arm, counts in (("baseline", baseline), ("canary", canary)):
        held = past.counts(arm)
        held.n_requests, held.n_errors = counts.requests, counts.errors
        past.labels.labelled[arm], past.labels.correct[arm] = counts.labelled, counts.correct
        (bins.baseline_counts if arm == "baseline" else bins.canary_counts)[:] = counts.latency
    return past


def _historical(result: GateResult) -> GateResult:
    return replace(
        result,
        gate=f"{result.gate}_history",
        reason=f"historical, against the baseline before the switch: {result.reason}",
        details={**result.details, "historical": 1.0},
    )


def _slo_errors(canary: _ArmOf, most: float, mark: _Mark) -> GateRun:
    search = RateSearch([canary.errors], [canary.requests], mark.alpha, [DESIGN_REQUESTS])
    yield [search]
    estimates, lows, highs = (float(values[0]) for values in search.result())
    rate = Bounds(estimates, lows, highs)
    verdict = _outcome(rate.low, rate.high, most, higher_is_worse=True)
    where = (
        f"{canary.errors} of {canary.requests} requests failed ({rate.estimate:.3%}, "
        f"{rate.low:.3%} to {rate.high:.3%}); allowed {most:.2%}"
    )
    return _bounded(
        mark,
        "slo_error_rate",
        "rate_bound",
        rate,
        most,
        verdict,
        (
            f"SLO error rate proven above what is allowed: {where}",
            f"SLO error rate proven within what is allowed: {where}",
            f"SLO error rate not decided yet: {where}",
        ),
        (0, canary.requests),
        {"errors_canary": float(canary.errors)},
    )


def _slo_latency(canary: _ArmOf, quantile: float, most_ms: float, mark: _Mark) -> GateRun:
    yield []
    edges = LATENCY_EDGES[1:]
    totals = np.cumsum(canary.latency)
    bounds = quantile_bounds_cumulative(totals, edges, quantile, mark.alpha, DESIGN_REQUESTS)
    verdict = _outcome(bounds.low, bounds.high, most_ms, higher_is_worse=True)
    p = f"p{quantile * 100:g}"
    where = (
        f"{p} {bounds.estimate:.3g} ms ({bounds.low:.3g} to {bounds.high:.3g}) over "
        f"{_total(totals)} requests; allowed {most_ms:g} ms"
    )
    return _bounded(
        mark,
        "slo_latency",
        "quantile_bound",
        bounds,
        most_ms,
        verdict,
        (
            f"SLO {p} latency proven above what is allowed: {where}",
            f"SLO {p} latency proven within what is allowed: {where}",
            f"SLO {p} latency not decided yet: {where}",
        ),
        (0, _total(totals)),
        {"quantile": quantile},
    )


def _finished(run: GateRun) -> GateResult:
    """A gate's result once its searches have run."""
    try:
        run.send(None)
    except StopIteration as done:
        result: GateResult = done.value
        return result
    raise AssertionError("a gate yields its searches once")


def combine(results: Sequence[GateResult]) -> Verdict:
    """Any blocking fail → fail; every blocking gate passed → pass; else inconclusive."""
    deciding = [r for r in results if r.blocking]
    if any(r.verdict == "fail" for r in deciding):
        return "fail"
    if all(r.verdict == "pass" for r in deciding):
        return "pass"
    return "inconclusive"


def _outcome(low: float, high: float, margin: float, *, higher_is_worse: bool) -> Verdict:
    if higher_is_worse:
        return "fail" if low > margin else "pass" if high <= margin else "inconclusive"
    return "fail" if high < margin else "pass" if low >= margin else "inconclusive"


def _error_rate(look: Look, gate: ErrorRateGate, mark: _Mark) -> GateRun:
    summary = look.summary
    alpha = mark.alpha
    base, canary = summary.counts("baseline"), summary.counts("canary")
    n_b, n_c = base.n_requests, canary.n_requests
    arm_alpha = alpha / 4  # each arm's bound, each side: fail uses two, pass up to two more
    arms = _rate_search((base.n_errors, canary.n_errors), (n_b, n_c), arm_alpha, _designs(summary))
    ratios: list[RatioSearch] = []
    if look.randomised:
        steps = _event_splits(summary)
        # the lower bound at alpha decides a fail, the upper at alpha / 2 a pass (shared with
        # the difference's pass); a ratio outside a bound is rejected by the e-value there
        ratios.append(RatioSearch(steps, alpha, DESIGN_EVENTS, alpha_high=alpha / 2))
    yield [arms, *ratios]
    rate_b, rate_c = _rates(arms)
    diff_low, diff_high = rate_c.low - rate_b.high, rate_c.high - rate_b.low
    floor, ratio = gate.max_increase, gate.max_ratio
    if ratios:
        shown = ratios[0].result()
        ratio_beyond, ratio_within = shown.low > ratio, shown.high <= ratio
    else:  # pinned preview: the ratio from the per-arm bounds
        ratio_beyond = rate_b.high > 0 and rate_c.low > ratio * rate_b.high
        ratio_within = rate_c.high <= ratio * rate_b.low
        shown = Bounds(
            _ratio(rate_c.estimate, rate_b.estimate),
            _ratio(rate_c.low, rate_b.high),
            _ratio(rate_c.high, rate_b.low),
        )
    if ratio_beyond and diff_low <= floor and look.randomised:
        # the difference's other proof, one stream (monitors/pooled.py): the ratio's lower
        # bound and the pooled rate, each at alpha / 4 (with the arms' alpha / 2: alpha)
        diff_low = max(diff_low, _pooled_difference_low(summary, alpha / 4))
    verdict: Verdict = "inconclusive"
    if ratio_beyond and diff_low > floor:
        verdict = "fail"
    elif ratio_within or diff_high <= floor:
        verdict = "pass"
    effect = rate_c.estimate - rate_b.estimate
    allowed = f"at most {ratio:g}x the baseline's rate or +{floor:.2%}"
    where = (
        f"canary {rate_c.estimate:.3%} vs baseline {rate_b.estimate:.3%} "
        f"(difference {diff_low:+.3%} to {diff_high:+.3%}; ratio {shown.low:.3g} to "
        f"{shown.high:.3g}); allowed {allowed}"
    )
    reasons = {
        "fail": f"error rate proven above what is allowed: {where}",
        "pass": f"error rate proven within what is allowed: {where}",
        "inconclusive": f"error rate not decided yet: {where}",
    }
    return GateResult(
        gate="error_rate",
        test="rate_ratio+difference",
        statistic=shown.estimate,
        p_value=None,
        effect_size=effect,
        threshold=floor,
        n_baseline=n_b,
        n_canary=n_c,
        verdict=verdict,
        reason=reasons[verdict],
        details={
            "baseline_rate": rate_b.estimate,
            "canary_rate": rate_c.estimate,
            "rate_ratio": shown.estimate,
            "ratio_low": shown.low,
            "ratio_high": shown.high,
            "max_ratio": ratio,
            "errors_baseline": float(base.n_errors),
            "errors_canary": float(canary.n_errors),
        },
        ci_low=diff_low,
        ci_high=diff_high,
        blocking=mark.blocking,
        alpha=mark.alpha,
    )


def _latency(look: Look, gate: LatencyGate, mark: _Mark) -> GateRun:
    yield []
    latency = look.summary.latency
    bins = latency.bins
    assert bins is not None, "latency is always binned"
    edges = bins.edges[1:]
    design_b, design_c = _designs(look.summary)
    alpha = mark.alpha
    # each arm's running totals once: the quantile's bounds and the arm's count
    totals_b, totals_c = np.cumsum(bins.baseline_counts), np.cumsum(bins.canary_counts)
    # the arms' bounds at alpha / 2 each: a pass, and in a pinned preview a fail (or a window
    # without a split generation); under a randomised split the fail comes from the one stream
    # (monitors.exceedances) instead
    q_b, q_c = (
        quantile_bounds_cumulative(totals, edges, gate.quantile, alpha / 2, design)
        for totals, design in ((totals_b, design_b), (totals_c, design_c))
    )
    low, high = _ratio(q_c.low, q_b.high), _ratio(q_c.high, q_b.low)
    estimate = _ratio(q_c.estimate, q_b.estimate)
    verdict = _outcome(low, high, gate.max_ratio, higher_is_worse=True)
    stream, log_e, exact = "", None, False
    proof = _Exceedances(look.summary, gate, alpha) if look.randomised else None
    if proof is not None and proof.splits:
        log_e, exact = proof.log_e(gate.max_ratio)
        # the lower bound is the stream's once it proves the ratio above max_ratio, else the
        # arms' bound kept at most max_ratio (their alpha for a fail went to the stream)
        if proof.proven(log_e):
            verdict, low = "fail", proof.low(gate.max_ratio, estimate)
            stream = (
                f"; e-value {math.exp(min(log_e, 700)):.3g} >= {1 / proof.e_alpha:.3g} that "
                "the canary's share of the slowest requests is above its share of all"
            )
        else:
            low = min(low, gate.max_ratio)
            verdict = _outcome(low, high, gate.max_ratio, higher_is_worse=True)
    p = f"p{gate.quantile * 100:g}"
    where = (
        f"{p} canary {q_c.estimate:.3g} ms vs baseline {q_b.estimate:.3g} ms, ratio "
        f"{estimate:.3g} ({low:.3g} to {high:.3g}); allowed {gate.max_ratio:g}x"
    )
    details = {
        "baseline_quantile": q_b.estimate,
        "canary_quantile": q_c.estimate,
        "quantile": gate.quantile,
    }
    if log_e is not None:  # the one stream's log e-value (or at most this, not yet near)
        details["exceedance_log_e" if exact else "exceedance_log_e_at_most"] = log_e
    return _bounded(
        mark,
        "latency",
        "quantile_ratio",
        Bounds(estimate, low, high),
        gate.max_ratio,
        verdict,
        (
            f"{p} latency proven above what is allowed: {where}{stream}",
            f"{p} latency proven within what is allowed: {where}",
            f"{p} latency not decided yet: {where}",
        ),
        (_total(totals_b), _total(totals_c)),
        details,
    )


class _Exceedances:
    """The latency gate's one-stream proof (monitors.exceedances) at ``alpha``: the product of
    every split generation's e-values, each wherever its mixture's quantile is in that
    generation's interval. The intervals get LATENCY_INTERVAL of ``alpha`` (half to the first
    generation, a quarter to the next, ...), the e-value the rest."""

    def __init__(self, summary: WindowSummary, gate: LatencyGate, alpha: float) -> None:
        self.gate = gate
        self.interval, self.e_alpha = alpha * LATENCY_INTERVAL, alpha * (1 - LATENCY_INTERVAL)
        self.design = DESIGN_REQUESTS / summary.labels.min_share
        self.splits = [
            (share, group)
            for _, group in sorted(summary.groups.items())
            if (share := group.canary_share) is not None and 0 < share < 1
        ]

    def _one(self, index: int, ratio: float, at_most: bool) -> float:
        share, group = self.splits[index]
        gate, e_alpha = self.gate, self.e_alpha
        counts_b, counts_c = group.latency.get("baseline"), group.latency.get("canary")
        n = group.requests["baseline"] + group.requests["canary"]
        if counts_b is None or counts_c is None:  # not binned: the least it can be
            return least_log_e(n, gate.quantile, share, e_alpha, self.design)
        alphas = (self.interval / 2 ** (index + 1), e_alpha)
        key = (n, share, ratio, gate.quantile, alphas, self.design, at_most)
        if key not in group.proofs:
            if len(group.proofs) > 64:  # kept while the generation's requests stay the same
                group.proofs.clear()
            group.proofs[key] = exceedance_log_e(
                counts_b,
                counts_c,
                LATENCY_LOG_BIN_RATIO,
                ratio,
                gate.quantile,
                share,
                alphas,
                self.design,
                occupied=group.occupied,
                at_most=at_most,
            )
        return group.proofs[key]

    def log_e(self, ratio: float) -> tuple[float, bool]:
        """The product's log e-value against "at most ``ratio``", and whether it is exact:
        while an upper bound on the newest generation's (cheap) shows that the product has not
        reached ``1 / alpha`` of the e-value, that bound is what comes back."""
        if not self.splits:
            return 0.0, True
        last = len(self.splits) - 1
        earlier = sum(self._one(i, ratio, False) for i in range(last))
        bound = earlier + self._one(last, ratio, True)
        if not self.proven(bound):
            return bound, False
        return earlier + self._one(last, ratio, False), True

    def proven(self, log_e: float) -> bool:
        return log_e >= math.log(1 / self.e_alpha)

    def low(self, ratio: float, estimate: float) -> float:
        """Once "at most ``ratio``" is rejected: the largest ratio of the grid ``ratio x
        1.02^k`` up to which every point is rejected too (then the canary's ratio is above it
        at the same alpha: the first point at or above the true ratio is among them), at most
        the estimate."""
        low = ratio
        while low * LATENCY_LOW_STEP <= estimate and self.proven(
            self.log_e(low * LATENCY_LOW_STEP)[0]
        ):
            low *= LATENCY_LOW_STEP
        return low


def _quality(look: Look, gate: QualityGate, mark: _Mark) -> GateRun:
    labels = look.summary.labels
    alpha = mark.alpha
    n_b, n_c = labels.labelled["baseline"], labels.labelled["canary"]
    metric = gate.metric
    if metric in ("auc", "mae", "rmse"):
        yield []
        unmeasured = GateResult.unmeasured(
            "quality",
            metric,
            "inconclusive",
            f"{metric} has no bounded per-request form: reported, never deciding "
            "(use accuracy or log_loss to decide)",
        )
        return replace(unmeasured, blocking=mark.blocking, alpha=alpha)
    if metric == "accuracy":
        margin, higher_is_worse = -gate.max_decrease, False
    else:
        margin, higher_is_worse = gate.max_increase, True
    stream = labels.differences.get(metric)
    if look.randomised and stream is not None and stream.count:
        yield []
        bounds = stream.bounds(alpha, _quality_design(look.summary.labels.min_share))
        test = "aipw_difference"
    elif metric == "accuracy":
        search = _rate_search(
            (labels.correct["baseline"], labels.correct["canary"]),
            (n_b, n_c),
            alpha / 2,
            _designs(look.summary),
        )
        yield [search]
        rate_b, rate_c = _rates(search)
        bounds = Bounds(
            rate_c.estimate - rate_b.estimate, rate_c.low - rate_b.high, rate_c.high - rate_b.low
        )
        test = "rate_difference"
    else:
        yield []
        bounds, test = Bounds(math.nan, -math.inf, math.inf), "aipw_difference"
    verdict = _outcome(bounds.low, bounds.high, margin, higher_is_worse=higher_is_worse)
    allowed = (
        f"at most {gate.max_decrease:.2%} lower"
        if metric == "accuracy"
        else f"at most {gate.max_increase:g} higher"
    )
    where = (
        f"{metric} canary minus baseline {bounds.estimate:+.4g} ({bounds.low:+.4g} to "
        f"{bounds.high:+.4g}) on {n_b} baseline and {n_c} canary labelled rows; allowed {allowed}"
    )
    return _bounded(
        mark,
        "quality",
        test,
        bounds,
        margin,
        verdict,
        (
            f"{metric} proven worse than allowed: {where}",
            f"{metric} proven within what is allowed: {where}",
            f"{metric} not decided yet: {where}",
        ),
        (n_b, n_c),
    )


def _output_drift(look: Look, gate: OutputDriftGate, mark: _Mark) -> GateRun:
    outputs = look.summary.outputs
    alpha = mark.alpha
    delta = gate.delta if gate.delta is not None else ADVISORY_DELTA
    if outputs.categorical and outputs.categories_complete:
        _, table = outputs.categories.table()
        search = tv_distance_search(
            [int(v) for v in table[0]], [int(v) for v in table[1]], alpha, _designs(look.summary)
        )
        yield [search] if search is not None else []
        bounds = Bounds(math.nan, 0.0, 1.0) if search is None else tv_distance_from(search)
        if look.randomised and outputs.mix:  # the lower bound from one stream per category
            design = _stream_design(look.summary.labels.min_share)
            low = tv_distance_low(list(outputs.mix.values()), alpha, design)
            bounds = replace(bounds, low=low)
        test, distance = "total_variation", "total-variation distance of the output mix"
    else:
        yield []
        numeric = outputs.numeric
        if numeric.bins is None:  # every value still at hand
            bounds = ks_distance_bounds(numeric.values("baseline"), numeric.values("canary"), alpha)
        else:  # every value counted on the frozen bins
            bounds = ks_distance_bounds_binned(
                numeric.bins.baseline_counts, numeric.bins.canary_counts, alpha
            )
        cut = outputs.below_cut
        if look.randomised and cut is not None and cut.count:
            bounds = replace(bounds, low=_ks_low(look, alpha, cut))
        test, distance = "ks_distance", "KS distance of the outputs"
    verdict = _outcome(bounds.low, bounds.high, delta, higher_is_worse=True)
    where = (
        f"{distance} {bounds.estimate:.3g} ({bounds.low:.3g} to {bounds.high:.3g}) against "
        f"{delta:g}"
    )
    return _bounded(
        mark,
        "output_drift",
        test,
        bounds,
        delta,
        verdict,
        (
            f"outputs proven to have moved more than allowed: {where}",
            f"outputs proven not to have moved more than allowed: {where}",
            f"output drift not decided yet: {where}",
        ),
        (outputs.n("baseline"), outputs.n("canary")),
    )


def _input_drift(
    inputs: Inputs | None, gate: InputDriftGate, mark: _Mark, name: str = "input_drift"
) -> GateRun:
    """The candidate's served features against the reference (:mod:`monitors.features`): the
    share of features proven drifted (Benjamini-Yekutieli at the gate's alpha) against
    ``max_share``; the baseline's own share is reported beside it (both drifted: the world
    moved, not the candidate)."""
    yield []
    if inputs is None or inputs.canary is None:
        why = inputs.why if inputs is not None else "no features were read"
        return replace(
            GateResult.unmeasured(name, "ks_tv_by", "inconclusive", why),
            threshold=gate.max_share,
            blocking=mark.blocking,
            alpha=mark.alpha,
        )
    options = {"alpha": mark.alpha, "delta": gate.delta, "max_share": gate.max_share}
    found = input_drift(inputs.canary, min_n=gate.min_n, **options)
    m = len(found.features)
    beside = ""
    if inputs.baseline is not None and inputs.baseline.n_rows >= gate.min_n:
        baseline = input_drift(inputs.baseline, min_n=gate.min_n, **options)
        beside = f"; the baseline's: {baseline.drifted} drifted of {baseline.n_rows:,} requests"
    reason = (
        f"{found.drifted} of {m} features drifted from {inputs.source} over {found.n_rows:,} "
        f"requests (KS or TV distance beyond {gate.delta:g}, false discovery rate "
        f"{mark.alpha:.3g}, Benjamini-Yekutieli); {m - found.not_within} proven within"
        f"{_drifted_text(found)}{beside}; fails at a share of {gate.max_share:g}"
    )
    details = {"features": float(m), "drifted": float(found.drifted)}
    for feature in found.most_drifted(5):
        details[f"{feature.name}.distance"] = feature.distance
        details[f"{feature.name}.low"] = feature.low
        details[f"{feature.name}.high"] = feature.high
    return GateResult(
        gate=name,
        test="ks_tv_by",
        statistic=float(found.drifted),
        p_value=None,
        effect_size=found.share,
        threshold=gate.max_share,
        n_baseline=found.n_reference,
        n_canary=found.n_rows,
        verdict=found.verdict,
        reason=reason,
        details=details,
        ci_low=found.share,
        ci_high=found.not_within / m,
        blocking=mark.blocking,
        alpha=mark.alpha,
    )


def _output_history(outputs: FeatureCounts, gate: OutputDriftGate, mark: _Mark) -> GateRun:
    """The candidate's outputs since the switch against its own before it (while it served
    beside the baseline): the KS distance of numbers or the total variation of categories
    (:mod:`monitors.features`, the earlier outputs a fixed reference), against ``delta``
    (advisory without one, reported against 0.1). Historical: the two windows are at
    different times."""
    yield []
    delta = gate.delta if gate.delta is not None else ADVISORY_DELTA
    before = outputs.reference.n_rows
    found = input_drift(outputs, alpha=mark.alpha, delta=delta, max_share=1.0, min_n=gate.min_n)
    (output,) = found.features
    verdict: Verdict = "fail" if output.drifted else "pass" if output.within else "inconclusive"
    distance = "KS distance" if output.kind == "numeric" else "total-variation distance"
    said = {
        "fail": "proven to have moved more than allowed",
        "pass": "proven not to have moved more than allowed",
        "inconclusive": "not decided yet",
    }[verdict]
    return GateResult(
        gate="output_drift_history",
        test="ks_distance" if output.kind == "numeric" else "total_variation",
        statistic=output.distance,
        p_value=None,
        effect_size=output.distance,
        threshold=delta,
        n_baseline=before,
        n_canary=outputs.n_rows,
        verdict=verdict,
        reason=(
            f"historical, against its own outputs before the switch: outputs {said}: "
            f"{distance} {output.distance:.3g} ({output.low:.3g} to {output.high:.3g}) "
            f"against {delta:g}; {outputs.n_rows:,} outputs since the switch, {before:,} before"
        ),
        details={"historical": 1.0},
        ci_low=output.low,
        ci_high=output.high,
        blocking=mark.blocking,
        alpha=mark.alpha,
    )


def _drifted_text(found: InputDrift) -> str:
    shown = [f for f in found.most_drifted(3) if f.drifted]
    if not shown:
        return ""
    return "; most: " + ", ".join(
        f"{f.name} {f.distance:.2f} ({f.low:.2f} to {f.high:.2f})" for f in shown
    )


def _ks_low(look: Look, alpha: float, cut: MeanDifference) -> float:
    """The KS distance's lower bound, at ``alpha``: the larger of the arms' DKW bound (at
    ``KS_DKW_SHARE`` of alpha) and the size of the share difference at the cut (the rest, split
    between its two sides): the KS distance is at least either."""
    numeric = look.summary.outputs.numeric
    dkw_alpha = alpha * KS_DKW_SHARE
    if numeric.bins is None:
        dkw = ks_distance_bounds(numeric.values("baseline"), numeric.values("canary"), dkw_alpha)
    else:
        dkw = ks_distance_bounds_binned(
            numeric.bins.baseline_counts, numeric.bins.canary_counts, dkw_alpha
        )
    at_cut = cut.bounds(
        alpha * (1 - KS_DKW_SHARE) / 2, _stream_design(look.summary.labels.min_share)
    )
    return max(dkw.low, at_cut.low, -at_cut.high, 0.0)


def _pooled_difference_low(summary: WindowSummary, alpha: float) -> float:
    """The error-rate difference's lower bound from the ratio's lower bound and the pooled
    rate of each plan generation, each at ``alpha`` (monitors/pooled.py)."""
    theta = rate_ratio_bounds(_event_splits(summary), alpha, DESIGN_EVENTS).low
    pooled = [
        PooledGroup(
            s,
            g.requests["canary"] + g.requests["baseline"],
            g.errors["canary"] + g.errors["baseline"],
        )
        for s, g in _split_groups(summary)
    ]
    return difference_low(pooled, theta, alpha, DESIGN_REQUESTS / summary.labels.min_share)


def _split_groups(summary: WindowSummary) -> list[tuple[float, GroupCounts]]:
    """The plan generations served at a split (0 < canary share < 1), with their shares."""
    return [
        (share, group)
        for group in summary.groups.values()
        if (share := group.canary_share) is not None and 0 < share < 1
    ]


def _event_splits(summary: WindowSummary) -> list[EventSplit]:
    """Each split generation's errors by arm, for the ratio's e-values."""
    return [
        EventSplit(s, g.errors["canary"], g.errors["baseline"]) for s, g in _split_groups(summary)
    ]


def _stream_design(share: float) -> float:
    """The intrinsic time a share-difference stream's bounds are tuned for (fixed in advance):
    the requests of the canary's design at the rollout's smallest share, each with the
    variance of an even split (1/4)."""
    return DESIGN_REQUESTS / share * 0.25 * (1 / share + 1 / (1 - share))


def _designs(summary: WindowSummary) -> tuple[float, float]:
    """The sample sizes each arm's bounds are tuned for (fixed before the rollout, as a valid
    mixture must be): the canary's ``DESIGN_REQUESTS``, and the baseline's count at the same
    time at the rollout's smallest canary share."""
    share = summary.labels.min_share
    return DESIGN_REQUESTS * (1 - share) / share, DESIGN_REQUESTS


def _quality_design(share: float) -> float:
    """The intrinsic time (sum of squared AIPW deviations) the quality bounds are tuned for,
    fixed in advance: four times the requests of the canary's design at the rollout's smallest
    share, each with the variance of a 90%-accurate model's correctness."""
    requests = 4 * DESIGN_REQUESTS / share
    return requests * 0.09 * (1 / share + 1 / (1 - share))


def _rate_search(
    successes: tuple[int, int], n: tuple[int, int], alpha: float, designs: tuple[float, float]
) -> RateSearch:
    """The search of the baseline's and the canary's rate bounds (together)."""
    return RateSearch(successes, n, alpha, list(designs))


def _rates(search: RateSearch) -> tuple[Bounds, Bounds]:
    """The baseline's and the canary's rate bounds, once searched."""
    rates, lows, highs = (values.tolist() for values in search.result())
    baseline, canary = (Bounds(rates[i], lows[i], highs[i]) for i in (0, 1))
    return baseline, canary


def _total(totals: npt.NDArray[np.int64]) -> int:
    """An arm's count from its running totals."""
    return int(totals[-1]) if totals.size else 0


def _bounded(
    mark: _Mark,
    gate: str,
    test: str,
    bounds: Bounds,
    margin: float,
    verdict: Verdict,
    what: tuple[str, str, str],
    counts: tuple[int, int],
    details: dict[str, float] | None = None,
) -> GateResult:
    """A gate's result from its effect's bounds: ``what`` is (the fail wording, the pass
    wording, what is undecided) and the place where it is said."""
    proven_beyond, proven_within, undecided = what
    reason = {
        "fail": proven_beyond,
        "pass": proven_within,
        "inconclusive": undecided,
    }[verdict]
    return GateResult(
        gate=gate,
        test=test,
        statistic=bounds.estimate,
        p_value=None,
        effect_size=bounds.estimate,
        threshold=margin,
        n_baseline=counts[0],
        n_canary=counts[1],
        verdict=verdict,
        reason=reason,
        details=details or {},
        ci_low=bounds.low,
        ci_high=bounds.high,
        blocking=mark.blocking,
        alpha=mark.alpha,
    )


def _ratio(top: float, bottom: float) -> float:
    if bottom > 0:
        return top / bottom
    return math.inf if top > 0 else math.nan
