"""The drift report beside a judged window shows the gate's distance (issue 9): the output-drift
gate's estimate, anytime-valid bounds, delta, alpha, role and verdict head the page, and
Evidently judges the output column by the same family of distance (KS for numbers, total
variation for categories) instead of its own choice (normed Wasserstein above 1,000 rows)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LogWriter
from contract.records import PredictionRecord
from contract.sql.engine import open_engine
from monitors import GateResult
from monitors.reports import drift_report_html
from monitors.twosample import drift_table
from rollout.analysis import analyse
from rollout.evidence import Evidence
from rollout.spec import AnalysisSpec, load_spec
from rollout.store.predictions import ArmSample, PredictionLog
from rollout.store.records import RolloutRecord

N = 20_000  # requests per arm, as in the issue
RECORD = RolloutRecord(
    id="r1", model="bc", environment="prod", strategy="linear", baseline_version="1",
    candidate_version="2", spec="{}", config_hash="h", state="progressing", step_index=0,
    step_started_at=0.0, created_at=0.0, updated_at=0.0, started_by="alice",
)  # fmt: skip


def analysis(delta: float) -> AnalysisSpec:
    gates = ["error_rate", {"output_drift": {"delta": delta}}]
    return load_spec({"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": gates}}).analysis


def section(page: str, name: str) -> str:
    """One of the report's own sections as text: tags dropped, entities read, spaces folded."""
    start = page.index(f'<section id="{name}"')
    text = re.sub(r"<[^>]+>", " ", page[start : page.index("</section>", start)])
    return " ".join(html.unescape(text).split())


def gate_figures(gate: GateResult) -> str:
    """The gate's figures as the report lists them, formatted as the judge prints them."""
    return (
        f"estimate {gate.statistic:.3g} anytime-valid bounds {gate.ci_low:.3g} to "
        f"{gate.ci_high:.3g} compared with delta {gate.threshold:g} alpha {gate.alpha:g}"
    )


def evidently_row(page: str) -> str:
    """Evidently's drift-table row of the output column: its type, method and finding."""
    row = re.search(
        r'"column_name": "output", "column_type": "\w+", "stattest_name": "[^"]+"', page
    )
    assert row is not None
    found = re.search(r'"data_drift": "[^"]+", "drift_score": [^,}]+', page[row.end() :])
    assert found is not None
    return f"{row.group(0)}, {found.group(0)}"


def records(arm: str, outputs: np.ndarray, amounts: np.ndarray) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            request_id=f"{arm}-{i}",
            ts=100.0 + i * 1e-3,
            environment="prod",
            model="bc",
            version="2" if arm == "canary" else "1",
            arm=arm,
            rollout_id="r1",
            plan_generation=1,
            features=json.dumps([{"amount": float(amounts[i])}]),
            output=json.dumps([float(outputs[i])]),
            latency_ms=5.0,
            error=None,
            status_code=200,
        )
        for i in range(len(outputs))
    ]


def test_a_failing_ks_gate_heads_the_stored_report_which_judges_outputs_by_ks(
    tmp_path: Path,
) -> None:
    """The issue's case: 20,000 numeric outputs per arm, a canary the KS gate proves beyond a
    small delta while Evidently's default (normed Wasserstein) calls the outputs undrifted.
    (A 0.05 sd shift, KS 0.02, cannot be proven beyond even a delta of 0.01 on 20,000 rows:
    the bounds reach about 0.04 either side, so that gate waits.) This canary snaps outputs
    within 0.3 of zero to zero: 12% of them cross the median (KS 0.12), each moving little."""
    rng = np.random.default_rng(9)
    baseline, amounts = rng.normal(size=N), rng.normal(size=(2, N))
    canary = rng.normal(size=N)
    canary[np.abs(canary) < 0.3] = 0.0
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    LogWriter(engine).write(records("baseline", baseline, amounts[0]))
    LogWriter(engine).write(records("canary", canary, amounts[1]))
    log = PredictionLog(engine)
    step = analyse(log.fold("r1", since_ts=0.0), analysis(0.05), weight_pct=50, step_index=0)
    gate = next(g for g in step.gates if g.gate == "output_drift")
    assert (gate.test, gate.verdict, gate.blocking) == ("ks_distance", "fail", True)
    assert gate.ci_low > 0.05 and (gate.n_baseline, gate.n_canary) == (N, N)
    shown = {"output": baseline[-5000:]}, {"output": canary[-5000:]}  # the rows reported
    before = drift_table(*shown)["output"]  # Evidently's own choice for this column
    assert (before.test, before.drifted) == ("wasserstein", False)

    evidence = Evidence(log, lambda: pytest.fail(), lambda: pytest.fail(), tmp_path, lambda _: [])
    path = evidence.report_path(RECORD, step)
    assert path is not None
    evidence.write_report(RECORD, step, path)
    page = path.read_text(encoding="utf-8")
    assert re.search(r'<body>\s*<section id="gate-verdicts"', page)  # at the top
    verdicts = section(page, "gate-verdicts")
    assert f"distance KS distance of the outputs (ks_distance) {gate_figures(gate)}" in verdicts
    assert "role blocking: its verdict decides the step" in verdicts
    assert f"verdict fail: {gate.reason} outputs judged baseline 20,000, canary 20,000" in verdicts
    assert "Other gates error_rate (rate_ratio+difference, blocking): pass: " in verdicts
    methods = section(page, "evidently-methods")
    assert "They compare 5,000 baseline and 5,000 canary rows." in methods
    assert 'Column output: Evidently\'s method "ks" (K-S p_value)' in methods
    assert "Other columns: Evidently's defaults." in methods
    assert evidently_row(page).startswith(
        '"column_name": "output", "column_type": "num", "stattest_name": "K-S p_value", '
        '"data_drift": "Detected"'
    )  # where the default method said no drift
    engine.dispose()


def test_a_category_mix_is_reported_by_its_total_variation_distance() -> None:
    """Categorical outputs: the gate's total-variation distance heads the page, and Evidently's
    output column is judged by the same distance against the gate's delta (the same number)."""
    rng = np.random.default_rng(5)
    kinds = ["approve", "review", "decline"]
    outputs = [rng.choice(kinds, N, p=p).tolist() for p in ([0.6, 0.3, 0.1], [0.55, 0.3, 0.15])]
    arms = {
        arm: ArmSample(arm=arm, n_requests=N, outputs=list(values))
        for arm, values in zip(("baseline", "canary"), outputs, strict=True)
    }
    step = analyse(arms, analysis(0.1), weight_pct=50)
    gate = next(g for g in step.gates if g.gate == "output_drift")
    assert (gate.test, gate.verdict) == ("total_variation", "pass")
    frames = [pd.DataFrame({"output": values}) for values in outputs]
    page = drift_report_html(*frames, step.gates)
    verdicts = section(page, "gate-verdicts")
    assert (
        "distance total-variation distance of the output mix (total_variation) "
        f"{gate_figures(gate)} role blocking"
    ) in verdicts
    assert f"verdict pass: {gate.reason}" in verdicts
    assert 'Column output: method "tv_distance"' in section(page, "evidently-methods")
    row = evidently_row(page)
    assert row.startswith(
        '"column_name": "output", "column_type": "cat", "stattest_name": "Total-variation '
        'distance", "data_drift": "Not Detected"'
    )
    assert float(row.rsplit(" ", 1)[1]) == pytest.approx(gate.statistic, abs=1e-5)
