"""Step analysis: gate results from two arms, Holm levels, and the combined verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitors import GateResult
from rollout.analysis import analyse, combine, gate_results, holm_levels, write_drift_report
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


def test_holm_correction_spares_a_marginal_failure() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {
                "gates": [{"error_rate": {"max_increase": 0.0}}, "latency"],
                "sequential": False,  # fixed-horizon p-values: a marginal one to spare
            },
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


def test_sequential_is_the_default_and_more_cautious_than_fixed_horizon() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {"gates": [{"error_rate": {"max_increase": 0.0}}], "correction": "none"},
        }
    )
    assert spec.analysis.sequential is True
    baseline, canary = arm("baseline", 1000, errors=2, seed=5), arm("canary", 1000, errors=8)
    (sequential,) = gate_results(baseline, canary, spec.analysis)
    fixed_spec = spec.analysis.model_copy(update={"sequential": False})
    (fixed,) = gate_results(baseline, canary, fixed_spec)
    assert fixed.verdict == "fail" and sequential.verdict == "pass"
    assert sequential.details["sequential"] == 1.0
    assert sequential.details["fixed_horizon_p"] == pytest.approx(fixed.p_value)
    assert (sequential.p_value or 0.0) > (fixed.p_value or 1.0)
    assert sequential.details["n_for_power"] > 1000  # requests per arm to catch +1 pt at 80%
    assert "always-valid" in sequential.reason


def test_a_gate_can_opt_out_of_sequential_testing() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {
                "gates": [{"error_rate": {"max_increase": 0.0, "sequential": False}}],
                "correction": "none",
            },
        }
    )
    baseline, canary = arm("baseline", 1000, errors=2, seed=5), arm("canary", 1000, errors=8)
    (result,) = gate_results(baseline, canary, spec.analysis)
    assert result.details["sequential"] == 0.0
    assert result.verdict == "fail"


def test_sequential_gates_still_catch_the_demo_broken_canary() -> None:
    # ~150 canary requests, accuracy 62% vs 98%: must fail at the first step.
    evidence = analyse(
        {
            "baseline": arm("baseline", 500, accuracy=0.98, seed=1),
            "canary": arm("canary", 150, accuracy=0.62, seed=2),
        },
        load_spec(
            {
                "strategy": {"linear": {"steps": 2}},
                "analysis": {
                    "gates": [
                        "error_rate",
                        {"latency": {"max_ratio": 1.5}},
                        {"output_drift": {"method": "psi"}},
                        {"quality": {"max_decrease": 0.02, "min_labels": 100}},
                    ]
                },
            }
        ).analysis,
        weight_pct=10,
    )
    by_gate = {g.gate: g for g in evidence.gates}
    assert by_gate["quality"].verdict == "fail"
    assert (by_gate["quality"].p_value or 1.0) < 1e-3  # far below any Holm level
    assert evidence.verdict == "fail"


def test_mean_shift_drift_and_loss_metrics_run_through_the_spec() -> None:
    baseline = ArmSample(
        arm="baseline",
        n_requests=200,
        outputs=[float(v) for v in np.linspace(0.0, 1.0, 200)],
        labelled=[(float(v), float(v)) for v in np.linspace(0.0, 1.0, 200)],
    )
    canary = ArmSample(
        arm="canary",
        n_requests=200,
        outputs=[float(v) + 0.5 for v in np.linspace(0.0, 1.0, 200)],
        labelled=[(float(v) + 0.5, float(v)) for v in np.linspace(0.0, 1.0, 200)],
    )
    mae_spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {
                "gates": [
                    {"output_drift": {"method": "mean_shift"}},
                    {"quality": {"metric": "mae", "max_increase": 0.1}},
                ]
            },
        }
    ).analysis
    drift, mae = gate_results(baseline, canary, mae_spec)
    assert (drift.test, drift.verdict) == ("mean_shift_msprt", "fail")
    assert drift.effect_size == pytest.approx(0.5 / np.std(np.linspace(0.0, 1.0, 200), ddof=1))
    assert (mae.test, mae.verdict) == ("mae_z", "fail")
    assert mae.effect_size == pytest.approx(0.5)


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


def test_require_power_reaches_the_gate_from_the_spec() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {"gates": [{"quality": {"require_power": True}}]},
        }
    )
    (quality,) = gate_results(arm("baseline", 300, seed=1), arm("canary", 300), spec.analysis)
    assert quality.verdict == "inconclusive"
    assert "underpowered" in quality.reason
    assert quality.details["canary_needed"] > 0
