"""How many canary requests a step needs to decide, said before it starts.

:func:`requests_to_pass` runs the judge (:mod:`rollout.judge`, the same bounds that decide) on
the window an *equal* candidate would produce on average — every count at its expected value
for the stated base rates — and finds the smallest canary count at which every blocking gate
passes. A real window wanders around that average, so this is close to the median of real
rollouts: ``bench/decisions.py`` measures both and reports their ratio
(``forecast_over_median``). A candidate that is worse than allowed is failed sooner the worse it
is; one close to a margin takes longer than an equal one.

:func:`requests_to_pass_alone` does the same for a step where the candidate serves alone
(100%): its SLO and its history against the baseline's requests before the switch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from monitors.anytime import MeanDifference
from rollout.judge import Look, combine, combine_alone, judge, judge_alone
from rollout.spec import AnalysisSpec
from rollout.summary import LATENCY_EDGES, GroupCounts, LabelSummary, WindowSummary

MOST = 10_000_000  # canary requests beyond which a step is called undecidable here


@dataclass(frozen=True)
class BaseRates:
    """What a forecast assumes of the traffic (stated wherever a forecast is shown)."""

    error_rate: float = 0.01
    accuracy: float = 0.9
    labelled: float = 0.8  # share of requests that get a label
    latency_sigma: float = 0.5  # spread of log latencies (lognormal)
    classes: tuple[float, ...] = (0.7, 0.3)  # the class mix of the outputs

    def describe(self) -> str:
        return (
            f"an equal candidate at {self.error_rate:.2%} errors, {self.accuracy:.0%} accuracy, "
            f"{self.labelled:.0%} of requests labelled"
        )


def expected_window(
    n_canary: int, share: float, min_share: float, rates: BaseRates
) -> WindowSummary:
    """The window of an equal candidate with ``n_canary`` requests at canary ``share``, every
    count at its expectation."""
    n_base = round(n_canary * (1 - share) / share)
    summary = WindowSummary(labels=LabelSummary(min_share=min_share))
    group = summary.groups.setdefault(1, GroupCounts())
    bins = summary.latency.bins
    assert bins is not None
    mass = _latency_mass(rates.latency_sigma)
    labels = summary.labels
    for arm, n in (("baseline", n_base), ("canary", n_canary)):
        errors = round(n * rates.error_rate)
        counts = summary.counts(arm)
        counts.n_requests, counts.n_errors = n, errors
        group.requests[arm], group.errors[arm] = n, errors
        target = bins.canary_counts if arm == "canary" else bins.baseline_counts
        target += np.round(mass * n).astype(np.int64)
        ok = n - errors
        for index, part in enumerate(rates.classes):
            summary.outputs.categories.add(arm, str(index), round(ok * part))
        summary.outputs.counts[arm] = ok
        labelled = round(ok * rates.labelled)
        labels.labelled[arm] = labelled
        labels.correct[arm] = round(labelled * rates.accuracy)
    summary.outputs.all_numeric = False
    p = rates.accuracy
    stream = MeanDifference(0.0, 1.0, min(min_share, 0.5))
    n_c, n_b = labels.labelled["canary"], labels.labelled["baseline"]
    s = min(max(share, stream.min_share), 1 - stream.min_share)
    stream.count = n_c + n_b
    stream.variance = p * (1 - p) * (n_c / (s * s) + n_b / ((1 - s) * (1 - s)))
    labels.differences["accuracy"] = stream
    return summary


def requests_to_pass(
    analysis: AnalysisSpec, share: float, min_share: float, rates: BaseRates | None = None
) -> int | None:
    """Canary requests at which every blocking gate passes an equal candidate, on average;
    None when no blocking gate judges, or when none is enough."""
    rates = rates or BaseRates()
    if not 0 < share < 1:
        return None

    def passes(n: int) -> bool:
        window = expected_window(n, share, min_share, rates)
        results = judge(Look(window, randomised=True), analysis)
        return any(r.blocking for r in results) and combine(results) == "pass"

    return _smallest(passes)


def _latency_mass(sigma: float) -> npt.NDArray[np.float64]:
    """The share of log-normal latencies (median 20 ms) in each of the latency bins."""
    with np.errstate(divide="ignore"):
        log_edges = np.log(np.maximum(LATENCY_EDGES, 1e-300))
    return np.asarray(np.diff(special.ndtr((log_edges - math.log(20.0)) / sigma)))


def requests_to_pass_alone(
    analysis: AnalysisSpec,
    baseline_before: int,
    rates: BaseRates | None = None,
    canary_before: int = 0,
) -> int | None:
    """Canary requests at which a step where an equal candidate serves alone passes its SLO
    and history (``baseline_before`` and ``canary_before``: the arms' requests before the
    switch; history stops holding the step after as many requests alone as the canary's
    before), on average; None when nothing judges it, or when no number is enough."""
    rates = rates or BaseRates()
    mass = _latency_mass(rates.latency_sigma)

    def passes(n: int) -> bool:
        summary = WindowSummary()
        rows = ((1, "baseline", baseline_before), (1, "canary", canary_before), (2, "canary", n))
        for generation, arm, count in rows:
            if count == 0:
                continue
            group = summary.groups.setdefault(generation, GroupCounts())
            group.requests[arm] = count
            group.errors[arm] = round(count * rates.error_rate)
            group.latency[arm] = np.round(mass * count).astype(np.int64)
        results = judge_alone(summary, 2, analysis)
        return any(r.blocking for r in results) and combine_alone(results, summary, 2) == "pass"

    return _smallest(passes)


def _smallest(passes: Callable[[int], bool]) -> int | None:
    """The smallest canary count that passes, on a 2% grid; None when MOST does not."""
    if not passes(MOST):
        return None
    low, high = 10, MOST  # passes(high); find the smallest such on a 2% grid
    while high / low > 1.02:
        middle = round(math.sqrt(low * high))
        if passes(middle):
            high = middle
        else:
            low = middle
    return high
