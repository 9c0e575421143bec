"""The cases a review of the earlier gates found, kept as regressions (issue 9):

- rare events: a Gaussian plug-in test falsely failed 6.8% of A/A runs at 0.1% errors;
- small windows: PSI > 0.2 failed 38% of A/A runs at 100 requests per arm;
- a large window: a fixed-horizon KS test failed a 0.05 sd shift (p = 2e-6) that any sensible
  margin allows;
- floors that outranked evidence: 75 of 75 canary requests failed and the step waited.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from monitors.anytime import bernoulli_bounds_many
from rollout.judge import Look, gate_alpha, judge
from rollout.spec import AnalysisSpec, default_spec, load_spec
from rollout.summary import GroupCounts, WindowSummary


def _analysis(gates: list[object]) -> AnalysisSpec:
    return load_spec(
        {"strategy": {"canary": {"steps": [{"weight": 10}]}}, "analysis": {"gates": gates}}
    ).analysis


MC = 2.5  # Monte Carlo slack in standard errors


def _within_alpha(
    analysis: AnalysisSpec, runs: int, windows: Callable[[], Iterator[WindowSummary]]
) -> None:
    """Each run's windows, one per look, judged until a fail: the runs that failed stay
    within the gate's alpha (Monte Carlo slack aside)."""
    failed = 0
    for _ in range(runs):
        for summary in windows():
            (result,) = judge(Look(summary, randomised=True), analysis)
            if result.verdict == "fail":
                failed += 1
                break
    alpha = gate_alpha(analysis)
    assert failed / runs <= alpha + MC * math.sqrt(alpha * (1 - alpha) / runs)


def test_rare_errors_do_not_fail_an_equal_canary_however_often_it_is_looked_at() -> None:
    """A/A at 0.1% errors and a 10% split, looking every 1,000 canary requests up to 20,000:
    the error gate's false fails stay within its share of alpha."""
    rng = np.random.default_rng(9)

    def windows() -> Iterator[WindowSummary]:
        n_c = n_b = e_c = e_b = 0
        for _look in range(20):
            n_c, n_b = n_c + 1000, n_b + 9000
            e_c += int(rng.binomial(1000, 0.001))
            e_b += int(rng.binomial(9000, 0.001))
            summary = WindowSummary()
            group = summary.groups.setdefault(1, GroupCounts())
            for arm, n, e in (("canary", n_c, e_c), ("baseline", n_b, e_b)):
                summary.counts(arm).n_requests, summary.counts(arm).n_errors = n, e
                group.requests[arm], group.errors[arm] = n, e
            yield summary

    _within_alpha(_analysis(["error_rate"]), 300, windows)


def _numeric_window(rng: np.random.Generator, n: int, shift: float) -> WindowSummary:
    summary = WindowSummary()
    for arm, centre in (("baseline", 0.0), ("canary", shift)):
        values = rng.normal(centre, 1.0, n).tolist()
        summary.add_batch(arm, {"1"}, [10.0] * n, values, 0)  # type: ignore[arg-type]
    return summary


def test_small_windows_never_fail_the_drift_gate_of_an_equal_canary() -> None:
    """A/A, N(0, 1) outputs, 100 requests per arm: the default drift gate is advisory, and one
    with a stated delta cannot be proven beyond it on so little (it stays undecided)."""
    rng = np.random.default_rng(4)
    blocking = _analysis([{"output_drift": {"delta": 0.1}}])
    advisory = default_spec().analysis
    for _ in range(200):
        summary = _numeric_window(rng, 100, 0.0)
        (drift,) = judge(Look(summary, randomised=True), blocking)
        assert drift.verdict == "inconclusive" and drift.blocking
        shown = {r.gate: r for r in judge(Look(summary, randomised=True), advisory)}
        assert not shown["output_drift"].blocking


def test_a_tiny_shift_on_a_large_window_passes_a_drift_margin() -> None:
    """20,000 requests per arm, outputs shifted by 0.05 sd (KS distance 0.02): proven within a
    delta of 0.1, where a fixed-horizon KS test rejected equality (p = 2e-6)."""
    from scipy import stats

    rng = np.random.default_rng(1)
    summary = _numeric_window(rng, 20_000, 0.05)
    analysis = _analysis([{"output_drift": {"delta": 0.1}}])
    (drift,) = judge(Look(summary, randomised=True), analysis)
    assert drift.test == "ks_distance" and drift.verdict == "pass"
    baseline = summary.outputs.numeric.values("baseline")
    canary = summary.outputs.numeric.values("canary")
    ks = stats.ks_2samp(baseline, canary)
    assert drift.effect_size == ks.statistic  # the gate's distance is the KS statistic
    assert ks.pvalue < 1e-3  # equality is rejected; the margin is not
    assert drift.ci_low <= ks.statistic <= drift.ci_high < 0.1


def test_a_canary_that_fails_every_request_fails_at_the_first_look() -> None:
    """75 of 75 canary requests failed: the error gate fails now, floors or not."""
    summary = WindowSummary()
    group = summary.groups.setdefault(1, GroupCounts())
    for arm, n, e in (("canary", 75, 75), ("baseline", 675, 5)):
        summary.counts(arm).n_requests, summary.counts(arm).n_errors = n, e
        group.requests[arm], group.errors[arm] = n, e
    results = {r.gate: r for r in judge(Look(summary, randomised=True), default_spec().analysis)}
    assert results["error_rate"].verdict == "fail"
    assert results["error_rate"].ci_low > 0.8  # the difference is proven above 80 points


Sampler = Callable[[int], list[Any]]  # n -> n outputs


def _split_window(share: float, arms: dict[str, tuple[int, int]]) -> WindowSummary:
    """Requests and errors per arm, all in one plan generation at canary ``share``."""
    summary = WindowSummary()
    summary.labels.min_share = min(share, 1 - share)
    group = summary.groups.setdefault(1, GroupCounts())
    for arm, (n, e) in arms.items():
        summary.counts(arm).n_requests, summary.counts(arm).n_errors = n, e
        group.requests[arm], group.errors[arm] = n, e
    return summary


def test_a_tripled_rare_error_rate_at_an_even_split_fails_on_the_pooled_difference() -> None:
    """0.1% -> 0.3% at 50%, 35,000 requests per arm: the arms' own bounds cannot yet prove the
    difference beyond +0.05 point; the ratio's bound with the pooled rate (one stream) can."""
    analysis = default_spec().analysis
    summary = _split_window(0.5, {"canary": (35_000, 105), "baseline": (35_000, 35)})
    alpha = gate_alpha(analysis)
    _, lows, highs = bernoulli_bounds_many([35, 105], [35_000, 35_000], alpha / 4, [10_000, 5_000])
    assert lows[1] - highs[0] < 0.0005  # per arm: not beyond the margin
    results = {r.gate: r for r in judge(Look(summary, randomised=True), analysis)}
    errors = results["error_rate"]
    assert errors.verdict == "fail" and errors.ci_low > 0.0005
    assert errors.details["ratio_low"] > 1.5
    # pinned requests (no randomisation) have only the arms' bounds: not yet
    pinned = {r.gate: r for r in judge(Look(summary, randomised=False), analysis)}
    assert pinned["error_rate"].verdict == "inconclusive"


def test_a_slower_p95_at_an_even_split_fails_on_the_exceedances_stream() -> None:
    """p95 1.3x the baseline's (1.2x allowed) at 50%, 4,000 requests per arm: the arms' own
    quantile bounds (their widths add) cannot yet prove the ratio above 1.2; the canary's
    share of the requests above the pooled quantile (one stream) can. Pinned, not yet."""
    analysis = _analysis([{"latency": {"quantile": 0.95, "max_ratio": 1.2}}])
    rng = np.random.default_rng(3)
    summary = WindowSummary()
    group = summary.groups.setdefault(1, GroupCounts())
    for arm, scale in (("baseline", 1.0), ("canary", 1.3)):
        latencies = (rng.lognormal(math.log(20), 0.5, 4000) * scale).tolist()
        summary.add_batch(arm, {"1"}, latencies, [], 0)  # type: ignore[arg-type]
        group.requests[arm] += len(latencies)
        group.add_latencies(arm, latencies)
    (latency,) = judge(Look(summary, randomised=True), analysis)
    assert latency.verdict == "fail" and latency.ci_low >= 1.2
    assert latency.details["exceedance_log_e"] >= math.log(1 / (0.9 * gate_alpha(analysis)))
    assert "e-value" in latency.reason
    (pinned,) = judge(Look(summary, randomised=False), analysis)
    assert pinned.verdict == "inconclusive" and pinned.ci_low < 1.2  # the arms' bounds
    assert latency.ci_low < latency.statistic < latency.ci_high


def test_a_p95_as_slow_as_allowed_rarely_fails_however_often_looked_at() -> None:
    """The canary's p95 exactly 1.2x the baseline's at 10%, looked at every 250 canary
    requests up to 4,000: the latency gate's false fails stay within its alpha."""
    rng = np.random.default_rng(5)

    def windows() -> Iterator[WindowSummary]:
        summary = WindowSummary()
        group = summary.groups.setdefault(1, GroupCounts())
        for _look in range(16):
            canary = rng.random(2500) < 0.1
            latencies = rng.lognormal(math.log(20), 0.5, 2500) * np.where(canary, 1.2, 1.0)
            for arm, mask in (("baseline", ~canary), ("canary", canary)):
                values = latencies[mask].tolist()
                summary.add_batch(arm, {"1"}, values, [], 0)  # type: ignore[arg-type]
                group.requests[arm] += len(values)
                group.add_latencies(arm, values)
            yield summary

    _within_alpha(_analysis([{"latency": {"quantile": 0.95, "max_ratio": 1.2}}]), 100, windows)


def _batches(
    rng: np.random.Generator, looks: int, canary: Sampler, baseline: Sampler
) -> Iterator[WindowSummary]:
    """A window grown by ``looks`` batches of 2,500 requests at a 10% split, outputs drawn by
    the arms' samplers, folded as the store folds them (counts, then the streams); the
    window after each batch."""
    summary = WindowSummary()
    group = summary.groups.setdefault(1, GroupCounts())
    for _ in range(looks):
        n_c = int(rng.binomial(2500, 0.1))
        outputs = {"canary": canary(n_c), "baseline": baseline(2500 - n_c)}
        for arm, values in outputs.items():
            group.requests[arm] += len(values)
            summary.add_batch(arm, {"1"}, [10.0] * len(values), values, 0)  # type: ignore[arg-type]
        summary.outputs.add_streams(
            group.canary_share or 0.1, outputs["canary"], outputs["baseline"], 0.1
        )
        yield summary


def _streamed(
    rng: np.random.Generator, looks: int, canary: Sampler, baseline: Sampler
) -> WindowSummary:
    """The window after all ``looks`` batches of :func:`_batches`."""
    *_, summary = _batches(rng, looks, canary, baseline)
    return summary


@pytest.mark.parametrize(
    ("seed", "looks", "canary", "baseline", "test"),
    [
        # 30% -> 40% of class 1, about 2,000 canary outputs: the category streams
        (0, 8, lambda rng, n: rng.binomial(1, 0.4, size=n).tolist(),
         lambda rng, n: rng.binomial(1, 0.3, size=n).tolist(), "total_variation"),
        # N(0, 1) -> N(0.2, 1) (KS 0.08), about 10,000 canary outputs: the median cut
        (8, 40, lambda rng, n: rng.normal(0.2, 1, size=n).tolist(),
         lambda rng, n: rng.normal(0, 1, size=n).tolist(), "ks_distance"),
    ],
    ids=["class-mix", "numeric-shift"],
)  # fmt: skip
def test_moved_outputs_fail_on_their_streams_where_the_arms_bounds_do_not_yet(
    seed: int,
    looks: int,
    canary: Callable[[np.random.Generator, int], list[Any]],
    baseline: Callable[[np.random.Generator, int], list[Any]],
    test: str,
) -> None:
    """At a 10% split the streams prove the distance beyond 0.05 where the arms' own bounds
    (a pinned preview's) do not yet."""
    rng = np.random.default_rng(seed)
    summary = _streamed(rng, looks, lambda n: canary(rng, n), lambda n: baseline(rng, n))
    analysis = _analysis([{"output_drift": {"delta": 0.05}}])
    (drift,) = judge(Look(summary, randomised=True), analysis)
    assert drift.test == test and drift.verdict == "fail"
    (pinned,) = judge(Look(summary, randomised=False), analysis)
    assert pinned.verdict == "inconclusive" and pinned.ci_low < 0.05 < drift.ci_low


def test_equal_outputs_rarely_fail_the_streamed_drift_gates_however_often_looked_at() -> None:
    """A/A at a 10% split, numbers and classes, looking after every batch of 2,500 requests up
    to 50,000: the drift gate's false fails stay within its alpha."""
    analysis = _analysis([{"output_drift": {"delta": 0.02}}])
    alpha = gate_alpha(analysis)
    rng = np.random.default_rng(12)
    samplers: dict[str, Sampler] = {
        "numbers": lambda n: rng.normal(0, 1, size=n).tolist(),
        "classes": lambda n: rng.choice(3, size=n, p=[0.5, 0.3, 0.2]).tolist(),
    }
    for name, draw in samplers.items():
        runs, failed = 100, 0
        for _ in range(runs):
            for summary in _batches(rng, 20, draw, draw):
                (drift,) = judge(Look(summary, randomised=True), analysis)
                if drift.verdict == "fail":
                    failed += 1
                    break
        assert failed / runs <= alpha + MC * math.sqrt(alpha * (1 - alpha) / runs), name
