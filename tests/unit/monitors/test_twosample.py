"""Column drift tests: each value against scipy and against Evidently 0.7 on the same data."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from monitors.twosample import (
    ColumnDrift,
    anderson,
    chi_square,
    column_drift,
    default_method,
    drift_table,
    jensen_shannon,
    ks,
    psi,
    psi_from_counts,
    wasserstein,
    wasserstein_sorted,
    z_test,
)

RNG = np.random.default_rng(7)
NUM_B, NUM_C = RNG.normal(size=500), RNG.normal(0.2, 1.1, size=400)
CAT_B = RNG.choice(["a", "b", "c"], 300, p=[0.5, 0.3, 0.2])
CAT_C = RNG.choice(["a", "b", "c"], 200, p=[0.4, 0.3, 0.3])
BIN_B, BIN_C = RNG.choice(["x", "y"], 300), RNG.choice(["x", "y"], 200, p=[0.3, 0.7])


@pytest.fixture(scope="module")
def evidently() -> Iterator[dict[str, Any]]:
    """Evidently's own stat tests (imported with its deprecation noise silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations import stattests
        from evidently.legacy.core import ColumnType

        yield {"tests": stattests, "num": ColumnType.Numerical, "cat": ColumnType.Categorical}


def run_evidently(evidently: dict[str, Any], name: str, b: Any, c: Any, kind: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = getattr(evidently["tests"], name)
        return test(pd.Series(b), pd.Series(c), evidently[kind], None)


def test_ks_matches_scipy_and_evidently(evidently: dict[str, Any]) -> None:
    ours = ks(NUM_B, NUM_C)
    ref = stats.ks_2samp(NUM_B, NUM_C)
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    theirs = run_evidently(evidently, "ks_stat_test", NUM_B, NUM_C, "num")
    assert ours.p_value == pytest.approx(float(theirs.drift_score), abs=1e-6)
    assert ours.drifted == bool(theirs.drifted)
    assert (ours.test, ours.threshold, ours.n_baseline, ours.n_canary) == ("ks", 0.05, 500, 400)


def test_anderson_matches_scipy_and_evidently(evidently: dict[str, Any]) -> None:
    ours = anderson(NUM_B[:200], NUM_C[:150] - 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.anderson_ksamp([NUM_B[:200], NUM_C[:150] - 0.1])
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(ref.significance_level, abs=1e-12)
    theirs = run_evidently(
        evidently, "anderson_darling_test", NUM_B[:200], NUM_C[:150] - 0.1, "num"
    )
    assert ours.p_value == pytest.approx(float(theirs.drift_score), abs=1e-6)
    assert ours.drifted == bool(theirs.drifted)


def test_wasserstein_matches_scipy_and_evidently(evidently: dict[str, Any]) -> None:
    ours = wasserstein(NUM_B, NUM_C)
    ref = stats.wasserstein_distance(NUM_B, NUM_C) / np.std(NUM_B)
    assert ours.statistic == pytest.approx(ref, abs=1e-12)
    assert ours.p_value is None
    theirs = run_evidently(evidently, "wasserstein_stat_test", NUM_B, NUM_C, "num")
    assert ours.statistic == pytest.approx(float(theirs.drift_score), abs=1e-6)
    assert ours.drifted == bool(theirs.drifted)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 7), (10, 10), (1000, 333), (257, 1024)])
def test_exact_wasserstein_equals_scipy_for_any_sizes(n: int, m: int) -> None:
    b, c = np.sort(RNG.exponential(size=n)), np.sort(RNG.normal(size=m))
    assert wasserstein_sorted(b, c) == pytest.approx(stats.wasserstein_distance(b, c), abs=1e-12)


@pytest.mark.parametrize("kind", ["num", "cat"])
def test_jensen_shannon_matches_scipy_and_evidently(evidently: dict[str, Any], kind: str) -> None:
    b, c = (NUM_B, NUM_C) if kind == "num" else (CAT_B, CAT_C)
    ours = jensen_shannon(b, c, categorical=kind == "cat")
    theirs = run_evidently(evidently, "jensenshannon_stat_test", b, c, kind)
    assert ours.statistic == pytest.approx(float(theirs.drift_score), abs=1e-6)
    assert ours.drifted == bool(theirs.drifted)
    if kind == "cat":
        shares_b = [np.mean(k == CAT_B) for k in "abc"]
        shares_c = [np.mean(k == CAT_C) for k in "abc"]
        assert ours.statistic == pytest.approx(distance.jensenshannon(shares_b, shares_c))


def test_z_matches_evidently_and_the_two_by_two_chi_square(evidently: dict[str, Any]) -> None:
    ours = z_test(BIN_B, BIN_C)
    theirs = run_evidently(evidently, "z_stat_test", BIN_B, BIN_C, "cat")
    assert ours.p_value == pytest.approx(float(theirs.drift_score), abs=1e-6)
    table = [
        [np.sum(BIN_B == "x"), np.sum(BIN_B == "y")],
        [np.sum(BIN_C == "x"), np.sum(BIN_C == "y")],
    ]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert ours.statistic**2 == pytest.approx(chi2.statistic)
    assert ours.p_value == pytest.approx(chi2.pvalue)
    assert ours.drifted


def test_chi_square_is_the_contingency_test() -> None:
    ours = chi_square(CAT_B, CAT_C)
    table = [[np.sum(k == CAT_B) for k in "abc"], [np.sum(k == CAT_C) for k in "abc"]]
    ref = stats.chi2_contingency(table, correction=False)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)
    assert ours.effect_size == pytest.approx(math.sqrt(ref.statistic / 500))


def test_psi_reuses_stored_edges_and_clips_empty_bins() -> None:
    edges = np.array([-np.inf, -1.0, 0.0, 1.0, np.inf])
    result = psi([-2.0, -0.5, 0.5, 2.0] * 25, [0.5] * 100, edges=edges)
    b, c = np.array([0.25] * 4), np.clip(np.array([0.0, 0.0, 1.0, 0.0]), 1e-4, None)
    assert result.statistic == pytest.approx(float(np.sum((c - b) * np.log(c / b))))
    assert result.drifted and result.p_value is None
    assert psi_from_counts([25, 25, 25, 25], [25, 25, 25, 25]) == 0.0


def test_default_method_follows_evidentlys_rule() -> None:
    small, large = RNG.normal(size=1000), RNG.normal(size=1001)
    assert default_method(small, small, categorical=False) == "ks"
    assert default_method(large, large, categorical=False) == "wasserstein"
    assert default_method(np.arange(1001) % 4, np.arange(10) % 4, categorical=False) == (
        "jensen_shannon"
    )
    assert default_method(np.arange(100) % 4, np.arange(10) % 4, categorical=False) == "chi_square"
    assert default_method(CAT_B, CAT_C, categorical=True) == "chi_square"
    assert default_method(BIN_B, BIN_C, categorical=True) == "z"
    assert default_method(np.repeat(CAT_B, 4), CAT_C, categorical=True) == "jensen_shannon"


def test_drift_table_agrees_with_an_evidently_report() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    baseline = pd.DataFrame(
        {"x": rng.normal(size=n), "y": rng.normal(size=n), "kind": rng.choice(["a", "b"], n)}
    )
    canary = pd.DataFrame(
        {
            "x": rng.normal(0.3, size=n),
            "y": rng.normal(size=n),
            "kind": rng.choice(["a", "b"], n, p=[0.2, 0.8]),
        }
    )
    ours = drift_table(baseline, canary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(current_data=canary, reference_data=baseline)
        metrics = snapshot.dict()["metrics"]
    values = {m["config"]["column"]: m["value"] for m in metrics if "column" in m["config"]}
    assert [ours[c].test for c in ("x", "y", "kind")] == [
        "wasserstein",
        "wasserstein",
        "jensen_shannon",
    ]
    for column in ("x", "y", "kind"):
        assert ours[column].statistic == pytest.approx(values[column], abs=1e-6)
        assert ours[column].drifted == (values[column] >= 0.1)
    assert [ours[c].drifted for c in ("x", "y", "kind")] == [True, False, True]


def test_column_drift_validates_and_serialises() -> None:
    with pytest.raises(ValueError, match="method"):
        column_drift([1.0, 2.0], [1.0, 2.0], method="energy")
    with pytest.raises(ValueError, match="both arms"):
        column_drift([], [1.0])
    result = column_drift(NUM_B, NUM_C, method="psi", column="score")
    assert isinstance(result, ColumnDrift)
    assert result.to_dict()["column"] == "score"
    assert result.to_dict()["p_value"] is None


def test_psi_formula_matches_evidently_on_the_same_bins(evidently: dict[str, Any]) -> None:
    # Evidently bins categories by value; on the same bins the PSI formulas agree.
    theirs = run_evidently(evidently, "psi_stat_test", CAT_B, CAT_C, "cat")
    counts_b = np.unique(CAT_B, return_counts=True)[1]  # a, b, c in order, all present
    counts_c = np.unique(CAT_C, return_counts=True)[1]
    assert psi_from_counts(counts_b, counts_c) == pytest.approx(float(theirs.drift_score), abs=1e-6)
