"""Contract every public gate keeps, run over all of them; and the package's import boundary."""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import monitors
from monitors import GateResult

Gate = Callable[..., GateResult]
RNG = np.random.default_rng(40)
NORMAL = RNG.normal(size=60).tolist()
LATENCY = RNG.lognormal(4.0, 0.3, size=60).tolist()

# gate function, data for each arm (60 observations), default gate name, default test name
GATES: list[tuple[Gate, tuple[object, object], str, str]] = [
    (monitors.ks_test, (NORMAL, NORMAL), "output_drift", "ks"),
    (monitors.chi_square_test, (["a", "b"] * 30, ["b", "a"] * 30), "output_drift", "chi_square"),
    (monitors.psi, (NORMAL, NORMAL), "output_drift", "psi"),
    (monitors.output_drift, (NORMAL, NORMAL), "output_drift", "ks"),
    (monitors.latency_test, (LATENCY, LATENCY), "latency", "mann_whitney"),
    (monitors.accuracy_test, ([True, False] * 30, [False, True] * 30), "quality", "accuracy_z"),
    (monitors.mean_shift_test, (NORMAL, NORMAL), "output_drift", "mean_shift_msprt"),
    (monitors.loss_test, (LATENCY, LATENCY), "quality", "log_loss_z"),
    (monitors.mcnemar_test, ([True, False] * 30, [True, False] * 30), "shadow", "mcnemar_exact"),
    (monitors.disagreement_test, ([1, 0] * 30, [1, 0] * 30), "shadow", "disagreement_binomial"),
    (monitors.wilcoxon_test, (NORMAL, NORMAL), "shadow", "wilcoxon_signed_rank"),
]
IDS = [gate.__name__ for gate, *_ in GATES]


@pytest.mark.parametrize(("gate", "arms", "name", "test"), GATES, ids=IDS)
def test_gate_names_itself_and_passes_identical_arms(
    gate: Gate, arms: tuple[object, object], name: str, test: str
) -> None:
    result = gate(*arms)

    assert (result.gate, result.test, result.verdict) == (name, test, "pass")
    assert (result.n_baseline, result.n_canary) == (60, 60)
    assert result.details["min_n"] > 0
    assert result.reason
    json.dumps(result.to_dict(), allow_nan=False)
    assert gate(*arms, gate="custom").gate == "custom"


@pytest.mark.parametrize(("gate", "arms", "name", "test"), GATES, ids=IDS)
def test_gate_is_inconclusive_below_min_n_and_names_the_missing_count(
    gate: Gate, arms: tuple[object, object], name: str, test: str
) -> None:
    result = gate(*arms, min_n=75)

    assert result.verdict == "inconclusive"
    assert "15 more baseline and 15 more canary" in result.reason
    assert (result.details["baseline_needed"], result.details["canary_needed"]) == (15, 15)


@pytest.mark.parametrize(("gate", "arms", "name", "test"), GATES, ids=IDS)
@pytest.mark.parametrize("option", [{"min_n": 0}, {"gate": ""}])
def test_gate_rejects_bad_shared_options(
    gate: Gate, arms: tuple[object, object], name: str, test: str, option: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=next(iter(option))):
        gate(*arms, **option)


def test_error_rate_keeps_the_same_contract() -> None:
    assert monitors.error_rate_test(5, 200, 5, 200).verdict == "pass"
    assert "85 more canary requests" in monitors.error_rate_test(5, 200, 0, 15).reason


def test_package_exports_the_public_api() -> None:
    assert sorted(monitors.__all__) == [
        "ColumnDrift",
        "GateResult",
        "Verdict",
        "accuracy_test",
        "auc_test",
        "chi_square_test",
        "column_drift",
        "default_method",
        "disagreement_test",
        "drift_table",
        "error_rate_test",
        "ks_test",
        "latency_test",
        "loss_test",
        "mcnemar_test",
        "mean_shift_test",
        "output_drift",
        "per_request_loss",
        "psi",
        "psi_edges",
        "wilcoxon_test",
    ]


def test_monitors_imports_only_numpy_scipy_and_the_standard_library() -> None:
    package = Path(monitors.__file__).parent
    for path in package.glob("*.py"):
        allowed = {"monitors", "numpy", "scipy", "__future__"}
        if path.name == "reports.py":  # the HTML report engineers read, rendered by Evidently
            allowed.add("evidently")
        if path.name == "feature_drift.py":  # the report's table: two logged frames compared
            allowed.add("pandas")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            third_party = {root for root in roots if root not in sys.stdlib_module_names}
            assert third_party <= allowed, f"{path.name} imports {third_party - allowed}"
