"""Step analysis: gate results from two arms, Holm levels, and the combined verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitors import GateResult
from rollout.analysis import analyse, combine, gate_results, holm_levels
from rollout.spec import default_spec, load_spec
from rollout.store.predictions import ArmSample

ANALYSIS = default_spec().analysis


def arm(
    name: str,
    n: int,
    *,
    errors: int = 0,
    accuracy: float = 0.9,
    positive_rate: float = 0.6,
    latency_ms: float = 10.0,
    seed: int = 0,
) -> ArmSample:
    rng = np.random.default_rng(seed)
    ok = n - errors
    outputs = [int(v) for v in rng.random(ok) < positive_rate]
    correct = rng.random(ok) < accuracy
    labels = [o if c else 1 - o for o, c in zip(outputs, correct, strict=True)]
    return ArmSample(
        arm=name,
        versions={"1" if name == "baseline" else "2"},
        n_requests=n,
        n_errors=errors,
        latencies_ms=list(rng.gamma(4.0, latency_ms / 4.0, n)),
        outputs=list(outputs),
        labelled=list(zip(outputs, labels, strict=True)),
    )


def result(verdict: str, gate: str = "g") -> GateResult:
    return GateResult(
        gate=gate,
        test="t",
        statistic=0.0,
        p_value=0.5,
        effect_size=0.0,
        threshold=0.05,
        n_baseline=1,
        n_canary=1,
        verdict=verdict,  # type: ignore[arg-type]
        reason=verdict,
    )


def test_combine_any_fail_fails() -> None:
    assert combine([result("pass"), result("inconclusive"), result("fail")]) == "fail"


def test_combine_any_inconclusive_is_inconclusive() -> None:
    assert combine([result("pass"), result("inconclusive")]) == "inconclusive"


def test_combine_all_pass_passes() -> None:
    assert combine([result("pass"), result("pass")]) == "pass"
    assert combine([]) == "pass"


def test_holm_levels_step_down_and_stop() -> None:
    levels = holm_levels([0.01, 0.04, None, 0.03], 0.05)
    assert levels[0] == pytest.approx(0.05 / 3)  # smallest: alpha / 3, rejected
    assert levels[3] == pytest.approx(0.05 / 2)  # next: alpha / 2, not rejected → stop
    assert levels[1] == pytest.approx(0.05 / 2)  # after the stop: same level, never rejected
    assert levels[2] is None


def test_good_canary_passes_every_gate() -> None:
    evidence = analyse(
        {"baseline": arm("baseline", 900, seed=1), "canary": arm("canary", 300, seed=2)},
        ANALYSIS,
        weight_pct=25,
        step_index=0,
        window_start=123.0,
    )
    assert [g.gate for g in evidence.gates] == ["error_rate", "latency", "output_drift", "quality"]
    assert [g.verdict for g in evidence.gates] == ["pass"] * 4
    assert evidence.verdict == "pass"
    assert (evidence.n_baseline, evidence.n_canary) == (900, 300)
    assert (evidence.step_index, evidence.weight_pct, evidence.window_start) == (0, 25, 123.0)
    assert evidence.reason == "all 4 gates pass"
    assert evidence.gates[2].test == "chi_square"  # 0/1 outputs are categorical
    assert evidence.gates[3].test == "accuracy_z"


def test_erroring_canary_fails_the_error_rate_gate() -> None:
    evidence = analyse(
        {"baseline": arm("baseline", 900, seed=1), "canary": arm("canary", 300, errors=60)},
        ANALYSIS,
        weight_pct=25,
    )
    by_gate = {g.gate: g for g in evidence.gates}
    assert by_gate["error_rate"].verdict == "fail"
    assert by_gate["error_rate"].n_canary == 300
    assert evidence.verdict == "fail"
    assert evidence.reason.startswith("error_rate fail:")


def test_wrong_canary_fails_quality_and_drift() -> None:
    evidence = analyse(
        {
            "baseline": arm("baseline", 900, seed=1),
            "canary": arm("canary", 300, accuracy=0.5, positive_rate=0.2, seed=3),
        },
        ANALYSIS,
        weight_pct=25,
    )
    by_gate = {g.gate: g for g in evidence.gates}
    assert by_gate["quality"].verdict == "fail"
    assert by_gate["quality"].effect_size < -0.3
    assert by_gate["output_drift"].verdict == "fail"
    assert by_gate["error_rate"].verdict == "pass"
    assert evidence.verdict == "fail"


def test_too_little_data_is_inconclusive() -> None:
    evidence = analyse(
        {"baseline": arm("baseline", 900), "canary": arm("canary", 20)}, ANALYSIS, weight_pct=10
    )
    assert evidence.verdict == "inconclusive"
    assert "too little data" in evidence.reason


def test_missing_arms_count_as_empty() -> None:
    evidence = analyse({}, ANALYSIS, weight_pct=10)
    assert evidence.verdict == "inconclusive"
    assert (evidence.n_baseline, evidence.n_canary) == (0, 0)


def test_full_weight_step_does_not_judge_gates() -> None:
    evidence = analyse({"canary": arm("canary", 150, errors=100)}, ANALYSIS, weight_pct=100)
    assert evidence.verdict == "pass"
    assert evidence.gates == ()
    assert evidence.n_canary == 150
    assert "no baseline at the same time" in evidence.reason


def test_holm_correction_spares_a_marginal_failure() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {"gates": [{"error_rate": {"max_increase": 0.0}}, "latency"]},
        }
    )
    baseline, canary = arm("baseline", 1000, errors=2, seed=5), arm("canary", 1000, errors=8)
    uncorrected = spec.analysis.model_copy(update={"correction": "none"})
    raw = gate_results(baseline, canary, uncorrected)
    holm = gate_results(baseline, canary, spec.analysis)
    assert raw[0].p_value == pytest.approx(holm[0].p_value)
    assert 0.025 < (raw[0].p_value or 1.0) < 0.05
    assert raw[0].verdict == "fail"
    assert holm[0].verdict == "pass"
    assert holm[0].threshold == pytest.approx(0.025)


def test_string_outputs_use_chi_square_and_string_labels() -> None:
    baseline = ArmSample(
        arm="baseline",
        n_requests=60,
        outputs=["cat", "dog"] * 30,
        labelled=[("cat", "cat")] * 60,
    )
    canary = ArmSample(
        arm="canary", n_requests=60, outputs=["cat", "dog"] * 30, labelled=[("cat", "cat")] * 60
    )
    spec = load_spec(
        {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["output_drift", "quality"]}}
    )
    results = gate_results(baseline, canary, spec.analysis)
    assert results[0].test == "chi_square"
    assert results[0].verdict == "pass"
    assert results[1].details["canary_accuracy"] == 1.0


def test_numeric_labels_match_float_outputs() -> None:
    sample = ArmSample(arm="canary", n_requests=60, labelled=[(1.0, 1), (0, 0.0), ([1], 1)] * 20)
    other = ArmSample(arm="baseline", n_requests=60, labelled=[(1, 1)] * 60)
    spec = load_spec({"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["quality"]}})
    (quality,) = gate_results(other, sample, spec.analysis)
    assert quality.details["canary_accuracy"] == 1.0


def test_a_gate_that_cannot_run_is_inconclusive_and_says_why() -> None:
    sample = ArmSample(arm="canary", n_requests=60, outputs=["a", "b"] * 30)
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {"gates": [{"output_drift": {"method": "ks"}}]},
        }
    )
    (drift,) = gate_results(sample, sample, spec.analysis)
    assert drift.verdict == "inconclusive"
    assert drift.reason.startswith("cannot run on these data:")
    assert math.isnan(drift.statistic)
