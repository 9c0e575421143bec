"""The input_drift gate on the manager's own path: a candidate registered in a real SQLite MLflow
registry with its training reference logged by ``mlflow.log_input``, prediction-log rows written
through the contract's writer as a router writes them, and the manager's looks. Drifted inputs
are found (and roll back when the gate is told to block); identical inputs are not flagged;
without a reference the baseline's first requests stand in for one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conftest import MODEL, DemoHome, LogWriter, logged
from rollout.manager import Manager
from rollout.spec import load_spec

FEATURES = [f"f{i}" for i in range(6)]
CODE = """
import mlflow


class Zero(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


mlflow.models.set_model(Zero())
"""


def spec(advisory: bool) -> object:
    return load_spec(
        {
            "strategy": {
                "canary": {"steps": [{"weight": 10, "min_requests": 50, "max_requests": 10**6}]}
            },
            "analysis": {
                "gates": [
                    {"error_rate": {"max_increase": 0.001}},  # undecided long enough to look
                    {"input_drift": {"advisory": advisory}},
                ]
            },
        }
    )


def register_with_reference(home: DemoHome, tmp_path: Path, frame: pd.DataFrame) -> str:
    import mlflow

    code = tmp_path / "zero.py"
    code.write_text(CODE)
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    mlflow.set_tracking_uri(home.settings.registry_uri)
    mlflow.set_registry_uri(home.settings.registry_uri)
    experiment = mlflow.create_experiment("drift", artifact_location=(tmp_path / "a").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_input(
            mlflow.data.from_pandas(frame, source=str(train), name="train"), context="training"
        )
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), registered_model_name=MODEL
        )
    return str(info.registered_model_version)


def rows(n: int, seed: int, shift: dict[str, float] | None = None) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    shift = shift or {}
    values = {name: rng.normal(shift.get(name, 0.0), 1.0, n) for name in FEATURES}
    return [{name: float(values[name][i]) for name in FEATURES} for i in range(n)]


def write(
    manager: Manager, rollout_id: str, arm: str, version: str, features: list[dict[str, float]]
) -> None:
    LogWriter(manager.engine).write(
        [
            replace(logged(rollout_id, arm, version, 0), features=json.dumps([row]))
            for row in features
        ]
    )


def drift_gate(manager: Manager, rollout_id: str) -> dict[str, Any]:
    """The input_drift gate's result at the rollout's last look (the live one while it waits,
    else the one its last decision kept)."""
    live = manager.status(MODEL, "prod").live
    if live is not None and manager.rollout(rollout_id).state == "progressing":
        gates = [gate.to_dict() for gate in live.gates]
    else:
        evidence = [e.evidence for e in manager.events(rollout_id) if e.evidence]
        gates = evidence[-1]["gates"]
    return next(gate for gate in gates if gate["gate"] == "input_drift")


def reference_frame(seed: int = 1) -> pd.DataFrame:
    frame = pd.DataFrame(rows(5_000, seed))
    frame["target"] = 0  # a label column the requests do not carry: left out
    return frame


def test_drifted_inputs_are_found_and_roll_back_when_the_gate_blocks(
    home: DemoHome, tmp_path: Path
) -> None:
    candidate = register_with_reference(home, tmp_path, reference_frame())
    manager = Manager(home.settings)
    baseline = home.versions["baseline"]
    manager.start(MODEL, baseline, "prod", actor="alice")
    rollout_id = manager.start(MODEL, candidate, "prod", spec(advisory=False), actor="alice")
    moved = {"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": 0.8}
    write(manager, rollout_id, "canary", candidate, rows(1_500, 2, moved))
    write(manager, rollout_id, "baseline", baseline, rows(1_500, 3, moved))
    manager.tick()
    gate = drift_gate(manager, rollout_id)
    assert gate["verdict"] == "fail" and gate["blocking"]
    assert gate["statistic"] == 4.0 and gate["n_canary"] == 1_500
    assert gate["n_baseline"] == 5_000  # the reference's rows
    reason = gate["reason"]
    assert reason.startswith(f"4 of 6 features drifted from the training reference of v{candidate}")
    assert "mlflow.log_input dataset 'train'" in reason
    assert "the baseline's: 4 drifted of 1,500 requests" in reason  # the world moved
    record = manager.rollout(rollout_id)
    assert record.state == "rolled_back"
    assert any("4 of 6 features drifted" in e.reason for e in manager.events(rollout_id))
    manager.close()


def test_identical_inputs_are_not_flagged(home: DemoHome, tmp_path: Path) -> None:
    candidate = register_with_reference(home, tmp_path, reference_frame())
    manager = Manager(home.settings)
    baseline = home.versions["baseline"]
    manager.start(MODEL, baseline, "prod", actor="alice")
    rollout_id = manager.start(MODEL, candidate, "prod", spec(advisory=True), actor="alice")
    for seed in (4, 5, 6):  # three looks at a growing window: none flags a feature
        write(manager, rollout_id, "canary", candidate, rows(1_500, seed))
        write(manager, rollout_id, "baseline", baseline, rows(1_500, seed + 10))
        manager.tick()
        gate = drift_gate(manager, rollout_id)
        assert gate["statistic"] == 0.0 and gate["verdict"] != "fail"
        assert not gate["blocking"]  # advisory by default
    assert gate["verdict"] == "pass"  # 4,500 rows: proven within 0.1
    assert manager.rollout(rollout_id).state in ("progressing", "promoted")
    manager.close()


def test_without_a_reference_the_baselines_first_requests_stand_in(home: DemoHome) -> None:
    manager = Manager(home.settings)
    baseline, candidate = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, baseline, "prod", actor="alice")
    rollout_id = manager.start(MODEL, candidate, "prod", spec(advisory=True), actor="alice")
    write(manager, rollout_id, "baseline", baseline, rows(3_000, 7))
    write(manager, rollout_id, "canary", candidate, rows(400, 8, {"f5": 1.5}))
    manager.tick()
    gate = drift_gate(manager, rollout_id)
    assert gate["verdict"] == "inconclusive"
    assert gate["reason"] == (
        f"no training reference for v{candidate}: no dataset logged with mlflow.log_input; no "
        "readable reference.parquet or reference.csv beside the model; the baseline's first "
        "5,000 requests of this rollout will stand in for one (3,000 so far)"
    )
    write(manager, rollout_id, "baseline", baseline, rows(3_000, 9))
    manager.tick()
    gate = drift_gate(manager, rollout_id)
    reason = gate["reason"]
    assert reason.startswith(
        "1 of 6 features drifted from the baseline's first 5,000 requests of this rollout "
        f"(no training reference: no training reference for v{candidate}"
    )
    assert "most: f5" in reason and gate["n_canary"] == 400
    manager.close()


def test_at_100_percent_the_inputs_are_judged_against_the_candidates_own_before(
    home: DemoHome, tmp_path: Path
) -> None:
    """The 10% step passes; at the 100% step the candidate's features since the switch are
    compared with its own while it served beside the baseline (input_drift_history), and its
    outputs with its own (output_drift_history)."""
    manager = Manager(home.settings)
    baseline, candidate = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, baseline, "prod", actor="alice")
    two_steps = load_spec(
        {
            "strategy": {
                "canary": {
                    "steps": [
                        {"weight": 10, "min_requests": 50},
                        {"weight": 100, "min_requests": 10**6},
                    ]
                }
            },
            "analysis": {
                "gates": [
                    {"error_rate": {"max_increase": 0.1}},
                    "input_drift",
                    {"output_drift": {"delta": 0.2}},
                ]
            },
        }
    )
    rollout_id = manager.start(MODEL, candidate, "prod", two_steps, actor="alice")
    write(manager, rollout_id, "canary", candidate, rows(1_000, 11))
    write(manager, rollout_id, "baseline", baseline, rows(1_000, 12))
    manager.tick()
    assert manager.rollout(rollout_id).step_index == 1  # at 100%
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.canary_weight_pct == 100
    LogWriter(manager.engine).write(
        [
            replace(
                logged(rollout_id, "canary", candidate, 0),
                features=json.dumps([row]),
                plan_generation=plan.generation,
            )
            for row in rows(1_500, 13, {"f0": 1.0, "f1": 1.0, "f2": 1.0})
        ]
    )
    manager.tick()
    live = manager.status(MODEL, "prod").live
    assert live is not None
    gates = {gate.gate: gate for gate in live.gates}
    inputs = gates["input_drift_history"]
    assert (inputs.verdict, inputs.statistic, inputs.n_canary) == ("fail", 3.0, 1_500)
    assert "from its own 1,000 requests before the switch" in inputs.reason
    outputs = gates["output_drift_history"]  # every output 0, before and after: within 0.2
    assert (outputs.verdict, outputs.n_baseline, outputs.n_canary) == ("pass", 1_000, 1_500)
    manager.close()
