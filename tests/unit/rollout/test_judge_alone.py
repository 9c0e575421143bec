"""The gates of a step where the candidate serves alone (100%, issue 10): its SLO and its
history against the baseline's window before the switch, on constructed windows."""

from __future__ import annotations

import math
import sys

import numpy as np

from rollout.analysis import analyse_alone
from rollout.judge import combine, combine_alone, judge_alone
from rollout.spec import AnalysisSpec, default_spec, load_spec
from rollout.summary import GroupCounts, WindowSummary


def _analysis(analysis: dict[str, object]) -> AnalysisSpec:
    return load_spec(
        {"strategy": {"canary": {"steps": [{"weight": 10}, {"weight": 100}]}}, "analysis": analysis}
    ).analysis


def window(
    rng: np.random.Generator,
    *,
    before: int = 0,
    alone: int = 0,
    failing: float = 0.01,
    slower: float = 1.0,
) -> WindowSummary:
    """Generation 1: a 10% split of ``before`` requests (1% errors); generation 2: the
    candidate alone for ``alone`` requests, failing ``failing`` of them, its latencies
    ``slower`` times the baseline's (log-normal, median 20 ms)."""
    summary = WindowSummary()
    rows = (
        (1, "baseline", round(before * 0.9), 0.01, 1.0),
        (1, "canary", round(before * 0.1), 0.01, 1.0),
        (2, "canary", alone, failing, slower),
    )
    for generation, arm, n, rate, scale in rows:
        if n == 0:
            continue
        group = summary.groups.setdefault(generation, GroupCounts())
        latencies = (rng.lognormal(math.log(20), 0.5, n) * scale).tolist()
        errors = int(rng.binomial(n, rate))
        summary.add_batch(arm, {"2" if arm == "canary" else "1"}, latencies, [], errors)  # type: ignore[arg-type]
        group.requests[arm] += n
        group.errors[arm] += errors
        group.add_latencies(arm, latencies)
    return summary


def test_a_candidate_failing_every_request_fails_its_slo_and_history_at_once() -> None:
    summary = window(np.random.default_rng(1), before=20_000, alone=30, failing=1.0)
    results = {r.gate: r for r in judge_alone(summary, 2, default_spec().analysis)}
    assert set(results) == {"slo_error_rate", "error_rate_history", "latency_history"}
    slo = results["slo_error_rate"]
    assert (slo.verdict, slo.n_canary, slo.threshold) == ("fail", 30, 0.05)
    assert slo.ci_low > 0.5 and slo.alpha == 0.05 / 3  # the phase's own alpha, split
    history = results["error_rate_history"]
    assert history.verdict == "fail" and history.details["historical"] == 1.0
    assert history.n_baseline == 18_000 and history.n_canary == 30  # before vs alone
    assert history.reason.startswith("historical, against the baseline before the switch")
    assert combine(list(results.values())) == "fail"


def test_a_healthy_candidate_passes_once_proven_within() -> None:
    analysis = default_spec().analysis
    few = window(np.random.default_rng(2), before=40_000, alone=200)
    assert combine(judge_alone(few, 2, analysis)) == "inconclusive"
    many = window(np.random.default_rng(2), before=40_000, alone=60_000)
    results = judge_alone(many, 2, analysis)
    assert [r.verdict for r in results] == ["pass", "pass", "pass"], [r.reason for r in results]
    evidence = analyse_alone(many, analysis, first_generation=2, weight_pct=100)
    assert (evidence.verdict, evidence.n_canary, evidence.n_baseline) == ("pass", 60_000, 0)


def test_a_candidate_30_percent_slower_fails_on_its_history() -> None:
    summary = window(np.random.default_rng(3), before=40_000, alone=8_000, slower=1.3)
    results = {r.gate: r for r in judge_alone(summary, 2, default_spec().analysis)}
    latency = results["latency_history"]
    assert latency.verdict == "fail" and latency.ci_low > 1.2  # p95 at most 1.2x allowed
    assert results["slo_error_rate"].verdict == "pass"


def test_without_a_window_before_the_switch_only_the_slo_judges() -> None:
    summary = window(np.random.default_rng(4), alone=500)
    (slo,) = judge_alone(summary, 2, default_spec().analysis)
    assert (slo.gate, slo.verdict, slo.alpha) == ("slo_error_rate", "pass", 0.05)


def test_a_latency_slo_fails_a_slow_candidate_and_passes_a_fast_one() -> None:
    analysis = _analysis({"slo": {"latency": {"quantile": 0.99, "max_ms": 100}}})
    assert analysis.effective_slo.error_rate is None  # the spec's SLO replaces the default
    slow = window(np.random.default_rng(5), alone=3000, slower=2.0)  # p99 about 128 ms
    fast = window(np.random.default_rng(5), alone=3000)  # p99 about 64 ms
    for summary, verdict in ((slow, "fail"), (fast, "pass")):
        (latency,) = judge_alone(summary, 2, analysis)
        assert (latency.gate, latency.verdict) == ("slo_latency", verdict), latency.reason
        assert latency.ci_low <= latency.statistic <= latency.ci_high


def test_no_requests_yet_is_inconclusive_and_gates_none_judges_nothing() -> None:
    empty = window(np.random.default_rng(6), before=1000)
    (slo, *_) = judge_alone(empty, sys.maxsize, default_spec().analysis)
    assert (slo.gate, slo.verdict, slo.n_canary) == ("slo_error_rate", "inconclusive", 0)
    assert judge_alone(empty, sys.maxsize, _analysis({"gates": "none"})) == []
    given = _analysis({"gates": "none", "slo": {"error_rate": {"max": 0.01}}})
    assert [r.gate for r in judge_alone(empty, 2, given)] == ["slo_error_rate"]


def test_history_stops_holding_the_step_after_as_many_requests_as_before() -> None:
    """4,000 canary requests before the switch: the history gates cannot yet prove an equal
    candidate within their margins after 4,000 alone, but no longer hold the step; a fail
    still rolls back however long it took."""
    analysis = default_spec().analysis
    short = window(np.random.default_rng(7), before=40_000, alone=3_900)
    assert analyse_alone(short, analysis, first_generation=2, weight_pct=100).verdict == (
        "inconclusive"
    )
    watched = window(np.random.default_rng(7), before=40_000, alone=4_000)
    results = judge_alone(watched, 2, analysis)
    assert "inconclusive" in [r.verdict for r in results if r.gate.endswith("_history")]
    assert combine_alone(results, watched, 2) == "pass"
    evidence = analyse_alone(watched, analysis, first_generation=2, weight_pct=100)
    assert evidence.verdict == "pass"
    assert evidence.reason == (
        "the SLO passes; history: no regression proven over 4,000 requests alone, as many as "
        "the 4,000 before the switch"
    )
    slower = window(np.random.default_rng(7), before=40_000, alone=30_000, slower=1.3)
    assert combine_alone(judge_alone(slower, 2, analysis), slower, 2) == "fail"


def test_an_equal_candidate_switched_in_at_night_is_not_rolled_back_on_its_history() -> None:
    """A/A across day and night: the baseline's window before the switch is the day's 18,000
    requests; the candidate alone serves the night, when the lighter load makes every request
    10% faster or, on a night of batch jobs, 10% slower (how many requests an hour never enters
    these gates; what each request sees does). Both changes are within the latency gate's
    margin (p95 at most 1.2x), and looked at every 250 requests up to 4,000, none of 30 runs of
    each is rolled back. A time-of-day change beyond the margin would be: the risk that marks
    these gates *historical*."""
    analysis = default_spec().analysis
    for night in (0.9, 1.1):
        rolled_back = 0
        for seed in range(30):
            rng = np.random.default_rng([seed, round(night * 10)])
            summary = window(rng, before=20_000)  # the day, split 90/10
            group = summary.groups.setdefault(2, GroupCounts())
            for _ in range(16):  # the night, alone: looks every 250 requests, 4,000 in all
                latencies = (rng.lognormal(math.log(20), 0.5, 250) * night).tolist()
                errors = int(rng.binomial(250, 0.01))
                summary.add_batch("canary", {"2"}, latencies, [], errors)
                group.requests["canary"] += 250
                group.errors["canary"] += errors
                group.add_latencies("canary", latencies)
                if combine_alone(judge_alone(summary, 2, analysis), summary, 2) == "fail":
                    rolled_back += 1
                    break
        assert rolled_back == 0, (night, rolled_back)


def test_a_watch_judges_the_release_s_accuracy_against_the_previous_one_s_record() -> None:
    """Labels by plan generation: the baseline's 90% before the switch, the release's 70% (or
    90%) alone since. A watch (``quality``) fails the worse one on its quality history; a
    100% step, which ends on its own evidence before most labels arrive, leaves it out."""
    analysis = default_spec().analysis  # quality: accuracy at most 1 point lower, blocking
    for accuracy, verdict in ((0.7, "fail"), (0.9, "inconclusive")):
        summary = window(np.random.default_rng(8), before=20_000, alone=3_000)
        before, alone = summary.groups[1], summary.groups[2]
        before.labelled["baseline"], before.correct["baseline"] = 5_000, 4_500
        alone.labelled["canary"], alone.correct["canary"] = 600, round(600 * accuracy)
        results = {r.gate: r for r in judge_alone(summary, 2, analysis, quality=True)}
        quality = results["quality_history"]
        assert quality.verdict == verdict, quality.reason
        assert (quality.n_baseline, quality.n_canary) == (5_000, 600)
        assert quality.alpha == 0.05 / 4  # the watch's alpha, split among four gates
        stepped = {r.gate for r in judge_alone(summary, 2, analysis)}
        assert stepped == {"slo_error_rate", "error_rate_history", "latency_history"}


def test_output_drift_is_judged_against_the_candidates_own_outputs_before_the_switch() -> None:
    """At 100% (and in the watch) the spec's output_drift gate compares the candidate's
    outputs since the switch with its own before it; blocking only with a delta."""
    from monitors.features import FeatureCounts, FeatureReference

    rng = np.random.default_rng(9)
    summary = window(rng, before=20_000, alone=5_000)
    before = FeatureReference({"output": rng.normal(0.0, 1.0, 2_000).tolist()})
    same, moved = FeatureCounts(before), FeatureCounts(before)
    same.add({"output": float(v)} for v in rng.normal(0.0, 1.0, 4_000))
    moved.add({"output": float(v)} for v in rng.normal(0.8, 1.0, 4_000))
    blocking = _analysis({"gates": ["error_rate", {"output_drift": {"delta": 0.1}}]})
    results = {r.gate: r for r in judge_alone(summary, 2, blocking, outputs=moved)}
    drift = results["output_drift_history"]
    assert (drift.verdict, drift.blocking, drift.test) == ("fail", True, "ks_distance")
    assert (drift.n_baseline, drift.n_canary) == (2_000, 4_000)
    assert drift.ci_low > 0.1 and drift.alpha == 0.05 / 3  # slo, error history, this
    assert drift.reason.startswith("historical, against its own outputs before the switch")
    assert combine_alone(list(results.values()), summary, 2) == "fail"
    kept = {r.gate: r for r in judge_alone(summary, 2, blocking, outputs=same)}
    assert kept["output_drift_history"].verdict == "pass"
    advisory = default_spec().analysis  # output_drift without a delta: reported only
    reported = {r.gate: r for r in judge_alone(summary, 2, advisory, outputs=moved)}
    assert reported["output_drift_history"].verdict == "fail"
    assert not reported["output_drift_history"].blocking
    assert reported["slo_error_rate"].alpha == 0.05 / 3  # it takes no share of alpha
    without = {r.gate for r in judge_alone(summary, 2, blocking)}
    assert "output_drift_history" not in without  # no outputs read: not judged


def test_input_drift_is_judged_against_the_candidates_own_requests_before_the_switch() -> None:
    from monitors.features import FeatureCounts, FeatureReference
    from rollout.judge import Inputs

    rng = np.random.default_rng(10)
    summary = window(rng, before=20_000, alone=5_000)
    before = FeatureReference.from_rows(
        [{"a": float(a), "b": float(b)} for a, b in rng.normal(0.0, 1.0, (2_000, 2))]
    )
    moved = FeatureCounts(before)
    moved.add({"a": float(a), "b": float(b)} for a, b in rng.normal((1.0, 0.0), 1.0, (3_000, 2)))
    spec = _analysis({"gates": ["error_rate", "input_drift"]})
    inputs = Inputs(moved, source="its own 2,000 requests before the switch")
    results = {r.gate: r for r in judge_alone(summary, 2, spec, inputs=inputs)}
    drift = results["input_drift_history"]
    assert (drift.verdict, drift.blocking, drift.statistic) == ("fail", False, 1.0)
    assert drift.reason.startswith(
        "1 of 2 features drifted from its own 2,000 requests before the switch over 3,000"
    )
    assert combine_alone(list(results.values()), summary, 2) != "fail"  # advisory
