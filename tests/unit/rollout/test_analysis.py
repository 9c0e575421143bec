"""A look at a window: the judge's gates, three outcomes, and the combined verdict; the drift
report beside them. The gates' statistics are checked in tests/unit/monitors; here, what each
gate decides on windows built to be clearly equal, clearly worse, or not decided yet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitors import GateResult
from rollout.analysis import analyse, summarise, write_drift_report
from rollout.judge import Look, combine, gate_alpha, judge
from rollout.spec import AnalysisSpec, default_spec, load_spec
from rollout.store.predictions import ArmSample
from rollout.summary import WindowSummary

ANALYSIS = default_spec().analysis  # the default gates


def arm(
    name: str,
    n: int,
    *,
    error_rate: float = 0.01,
    accuracy: float = 0.9,
    positive_rate: float = 0.6,
    latency_ms: float = 10.0,
    labelled: float = 1.0,
    seed: int = 0,
) -> ArmSample:
    rng = np.random.default_rng(seed)
    errors = int(rng.binomial(n, error_rate))
    ok = n - errors
    outputs = [int(v) for v in rng.random(ok) < positive_rate]
    correct = rng.random(ok) < accuracy
    labels = [o if c else 1 - o for o, c in zip(outputs, correct, strict=True)]
    pairs = list(zip(outputs, labels, strict=True))[: int(ok * labelled)]
    return ArmSample(
        arm=name,
        versions={"1" if name == "baseline" else "2"},
        n_requests=n,
        n_errors=errors,
        latencies_ms=list(rng.lognormal(np.log(latency_ms), 0.4, n)),
        outputs=list(outputs),
        labelled=pairs,
    )


def window(canary: ArmSample, baseline: ArmSample, share: float = 0.1) -> WindowSummary:
    return WindowSummary.from_samples({"canary": canary, "baseline": baseline}, canary_share=share)


def gates(summary: WindowSummary, spec: object = ANALYSIS) -> dict[str, GateResult]:
    return {r.gate: r for r in judge(Look(summary, randomised=True), spec)}  # type: ignore[arg-type]


def result(verdict: str, blocking: bool = True) -> GateResult:
    return GateResult(
        gate="g",
        test="t",
        statistic=0.0,
        p_value=None,
        effect_size=0.0,
        threshold=0.0,
        n_baseline=1,
        n_canary=1,
        verdict=verdict,  # type: ignore[arg-type]
        reason=verdict,
        blocking=blocking,
    )


def test_blocking_gates_combine_and_advisory_ones_never_decide() -> None:
    assert combine([result("pass"), result("fail")]) == "fail"
    assert combine([result("pass"), result("inconclusive")]) == "inconclusive"
    assert combine([result("pass"), result("fail", blocking=False)]) == "pass"
    assert combine([result("inconclusive", blocking=False)]) == "pass"


def test_the_default_gates_split_alpha_among_the_blocking_ones() -> None:
    assert [e.name for e in ANALYSIS.effective_gates] == [
        "error_rate",
        "latency",
        "output_drift",
        "quality",
    ]
    assert gate_alpha(ANALYSIS) == pytest.approx(0.05 / 3)  # output drift is advisory
    none = load_spec({"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": "none"}})
    assert none.analysis.effective_gates == ()
    bare = load_spec({"strategy": {"linear": {"steps": 2}}})  # no analysis: the defaults
    assert [e.name for e in bare.analysis.effective_gates] == [
        e.name for e in ANALYSIS.effective_gates
    ]


def test_an_equal_canary_passes_every_blocking_gate_with_enough_data() -> None:
    results = gates(window(arm("canary", 20_000, seed=1), arm("baseline", 180_000, seed=2)))
    assert {name: r.verdict for name, r in results.items() if r.blocking} == {
        "error_rate": "pass",
        "latency": "pass",
        "quality": "pass",
    }
    drift = results["output_drift"]
    assert not drift.blocking and drift.ci_low <= drift.effect_size <= drift.ci_high
    for r in results.values():
        assert r.ci_low <= r.effect_size <= r.ci_high
        assert r.alpha == pytest.approx(0.05 / 3)


def test_little_data_is_undecided_not_failed() -> None:
    results = gates(window(arm("canary", 60, seed=1), arm("baseline", 540, seed=2)))
    assert {r.verdict for r in results.values() if r.blocking} == {"inconclusive"}


def test_a_canary_that_fails_every_request_fails_at_once() -> None:
    """75 of 75 canary requests failed: the evidence decides, no floor holds it."""
    canary = arm("canary", 75, error_rate=1.0, seed=1)
    results = gates(window(canary, arm("baseline", 675, seed=2)))
    assert results["error_rate"].verdict == "fail"
    assert "proven above" in results["error_rate"].reason


@pytest.mark.parametrize(
    ("base", "canary_rate", "n_canary"), [(0.01, 0.02, 20_000), (0.001, 0.003, 60_000)]
)
def test_a_doubled_or_tripled_error_rate_fails(
    base: float, canary_rate: float, n_canary: int
) -> None:
    canary = arm("canary", n_canary, error_rate=canary_rate, seed=3)
    baseline = arm("baseline", 9 * n_canary, error_rate=base, seed=4)
    error_rate = gates(window(canary, baseline))["error_rate"]
    assert error_rate.verdict == "fail"
    assert error_rate.details["ratio_low"] > 1.5


def test_slower_latency_and_worse_accuracy_fail() -> None:
    canary = arm("canary", 20_000, latency_ms=13.0, accuracy=0.86, seed=5)
    results = gates(window(canary, arm("baseline", 180_000, seed=6)))
    assert results["latency"].verdict == "fail"
    assert results["latency"].ci_low > 1.2
    assert results["quality"].verdict == "fail"
    assert results["quality"].ci_high < -0.01


def test_the_accuracy_bounds_are_the_aipw_stream_when_randomised() -> None:
    summary = window(arm("canary", 5_000, seed=7), arm("baseline", 45_000, seed=8))
    randomised = {r.gate: r for r in judge(Look(summary, randomised=True), ANALYSIS)}
    pinned = {r.gate: r for r in judge(Look(summary, randomised=False), ANALYSIS)}
    assert randomised["quality"].test == "aipw_difference"
    assert pinned["quality"].test == "rate_difference"
    width = {
        g: r["quality"].ci_high - r["quality"].ci_low for g, r in (("r", randomised), ("p", pinned))
    }
    assert width["r"] < width["p"]  # one sequence on the difference beats two per-arm ones


def test_drift_is_advisory_unless_a_delta_is_given() -> None:
    canary = arm("canary", 5_000, positive_rate=0.3, seed=9)
    summary = window(canary, arm("baseline", 45_000, seed=10))
    advisory = gates(summary)["output_drift"]
    assert (advisory.blocking, advisory.verdict, advisory.test) == (
        False,
        "fail",
        "total_variation",
    )
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {"gates": [{"output_drift": {"delta": 0.1}}]},
        }
    )
    blocking = gates(summary, spec.analysis)["output_drift"]
    assert (blocking.blocking, blocking.verdict) == (True, "fail")
    assert blocking.ci_low > 0.1 and blocking.effect_size == pytest.approx(0.3, abs=0.02)


def test_numeric_outputs_are_judged_by_the_ks_distance() -> None:
    rng = np.random.default_rng(11)
    baseline = ArmSample(arm="baseline", n_requests=4000, outputs=list(rng.normal(size=4000)))
    canary = ArmSample(arm="canary", n_requests=4000, outputs=list(rng.normal(0.5, 1, 4000)))
    drift = gates(window(canary, baseline, share=0.5))["output_drift"]
    assert drift.test == "ks_distance"
    assert drift.ci_low < drift.effect_size < drift.ci_high


def test_analyse_summarises_the_blocking_gates() -> None:
    evidence = analyse(
        window(arm("canary", 75, error_rate=1.0, seed=1), arm("baseline", 675, seed=2)),
        ANALYSIS,
        weight_pct=10,
    )
    assert evidence.verdict == "fail"
    assert evidence.reason.startswith("error_rate fail: error rate proven above")
    assert summarise([], "pass").startswith("no blocking gates")


def test_drift_report_is_written_for_the_manager(tmp_path: Path) -> None:
    baseline, canary = arm("baseline", 300, seed=1), arm("canary", 300, positive_rate=0.2)
    path = write_drift_report(baseline, canary, tmp_path / "reports" / "step0.html")
    html = path.read_text(encoding="utf-8")
    assert path.exists() and html.lstrip().lower().startswith("<!doctype html")
    assert "output" in html


def test_drift_report_covers_features_and_needs_rows(tmp_path: Path) -> None:
    baseline, canary = arm("baseline", 120, seed=1), arm("canary", 80)
    features = {
        "baseline_features": pd.DataFrame({"amount": np.linspace(0.0, 1.0, 120)}),
        "canary_features": pd.DataFrame({"amount": np.linspace(0.5, 1.5, 80)}),
    }
    html = write_drift_report(baseline, canary, tmp_path / "r.html", **features).read_text()
    assert "amount" in html and "output" in html
    with pytest.raises(ValueError, match="baseline has no outputs or features"):
        write_drift_report(ArmSample(arm="baseline"), canary, tmp_path / "empty.html")


def test_the_input_drift_gate_is_advisory_unless_told_and_says_why_it_cannot_judge() -> None:
    from monitors.features import FeatureCounts, FeatureReference
    from rollout.judge import Inputs

    rng = np.random.default_rng(11)
    reference = FeatureReference({f"x{i}": rng.normal(size=5_000) for i in range(4)})
    moved = FeatureCounts(reference)
    moved.add(
        {f"x{i}": float(rng.normal(1.0 if i < 3 else 0.0)) for i in range(4)} for _ in range(2_000)
    )
    summary = window(arm("canary", 3_000, seed=1), arm("baseline", 27_000, seed=2))
    spec = AnalysisSpec.model_validate(
        {"gates": ["error_rate", {"input_drift": {"max_share": 0.5}}]}
    )
    inputs = Inputs(moved, source="the training reference of v2")
    evidence = analyse(summary, spec, weight_pct=10, inputs=inputs)
    drift = {g.gate: g for g in evidence.gates}["input_drift"]
    assert (drift.verdict, drift.blocking, drift.statistic) == ("fail", False, 3.0)
    assert drift.effect_size == pytest.approx(0.75) and drift.threshold == 0.5
    assert drift.reason.startswith("3 of 4 features drifted from the training reference of v2")
    assert evidence.verdict != "fail"  # advisory: reported, never deciding
    assert gate_alpha(spec) == spec.alpha  # and it takes no share of the alpha

    blocking = AnalysisSpec.model_validate(
        {"gates": ["error_rate", {"input_drift": {"advisory": False}}]}
    )
    assert gate_alpha(blocking) == blocking.alpha / 2
    assert analyse(summary, blocking, weight_pct=10, inputs=inputs).verdict == "fail"

    why = "no training reference for v2: no dataset logged with mlflow.log_input"
    missing = analyse(summary, blocking, weight_pct=10, inputs=Inputs(None, why=why))
    drift = {g.gate: g for g in missing.gates}["input_drift"]
    assert (drift.verdict, drift.reason) == ("inconclusive", why)
    assert missing.verdict == "inconclusive"
