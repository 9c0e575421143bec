"""Input drift against a reference: the distances against scipy's on the same data, the
Benjamini-Yekutieli selection against scipy's, and by simulation against known truth, the false
discovery rate at every look and the power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitors.features import (
    BINS,
    FeatureCounts,
    FeatureReference,
    by_levels,
    input_drift,
    massart_radius,
)
from monitors.quantiles import dkw_radius, ks_distance_bounds_binned, tv_distance_bounds

# N(0, 1) against N(mu, 1) is at KS distance 2 Phi(mu / 2) - 1: this mu puts it exactly at 0.1
AT_MARGIN = 2 * stats.norm.ppf(0.55)


def rows_of(columns: dict[str, np.ndarray]) -> list[dict[str, object]]:
    names = list(columns)
    n = len(columns[names[0]])
    return [{name: columns[name][i].item() for name in names} for i in range(n)]


def test_the_ks_distance_is_scipys_when_every_value_has_its_bin() -> None:
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 400, size=5_000).astype(float)
    served = rng.integers(30, 430, size=2_000).astype(float)
    counts = FeatureCounts(FeatureReference({"x": reference}))
    counts.add({"x": float(v)} for v in served)
    found = input_drift(counts, delta=0.05)
    assert found.features[0].kind == "numeric"
    assert found.features[0].distance == pytest.approx(stats.ks_2samp(reference, served).statistic)


def test_the_ks_distance_on_quantile_bins_is_within_a_bins_mass_of_scipys() -> None:
    rng = np.random.default_rng(4)
    reference, served = rng.normal(size=50_000), rng.normal(0.2, 1.1, size=4_000)
    counts = FeatureCounts(FeatureReference({"x": reference}))
    counts.add({"x": float(v)} for v in served)
    exact = stats.ks_2samp(reference, served).statistic
    found = input_drift(counts).features[0]
    assert exact - 1.5 / BINS <= found.distance <= exact + 1e-12
    assert found.low <= exact <= found.high


def test_the_tv_distance_of_categories_and_the_rest() -> None:
    reference = ["a"] * 500 + ["b"] * 300 + ["c"] * 200
    served = ["a"] * 100 + ["b"] * 300 + ["z"] * 100  # z: a category the reference never had
    counts = FeatureCounts(FeatureReference({"colour": reference}))
    counts.add({"colour": v} for v in served)
    found = input_drift(counts).features[0]
    p = {"a": 0.5, "b": 0.3, "c": 0.2, "z": 0.0}
    q = {"a": 0.2, "b": 0.6, "c": 0.0, "z": 0.2}
    assert found.kind == "categorical"
    assert found.distance == pytest.approx(0.5 * sum(abs(p[k] - q[k]) for k in p))
    direct = tv_distance_bounds([500, 300, 200, 0], [100, 300, 0, 100], 0.05, 5_000.0)
    assert (found.low, found.high) == pytest.approx((direct.low, direct.high))


def test_few_distinct_numbers_are_categories_and_missing_values_are_left_out() -> None:
    reference = FeatureReference({"flag": [0, 1] * 50, "x": [float(i) for i in range(100)]})
    assert [f.kind for f in reference.features.values()] == ["categorical", "numeric"]
    counts = FeatureCounts(reference)
    counts.add([{"flag": 1, "x": "n/a"}, {"flag": 1.0}, {"x": 3.0}])
    assert counts.n_rows == 3
    assert counts.counts["flag"].sum() == 2 and counts.counts["x"].sum() == 1


def test_by_selection_is_scipys_on_the_anytime_p_values() -> None:
    """The step-up over the BY levels flags what scipy's BY adjustment flags, on the p-values
    the bounds imply (the least alpha at which a feature's lower bound clears delta)."""
    rng = np.random.default_rng(5)
    shifts = [0.0, 0.1, AT_MARGIN, 0.3, 0.35, 0.4, 0.45, 0.5, 0.8, 1.0]
    reference = {f"x{i}": rng.normal(size=20_000) for i in range(len(shifts))}
    served = {f"x{i}": rng.normal(s, size=1_500) for i, s in enumerate(shifts)}
    counts = FeatureCounts(FeatureReference(reference))
    counts.add(rows_of(served))
    alpha, delta = 0.05, 0.1
    found = input_drift(counts, alpha=alpha, delta=delta)

    def p_value(name: str) -> float:
        def clears(a: float) -> bool:
            reference, served = counts.reference.features[name].counts, counts.counts[name]
            edges = ks_distance_bounds_binned(reference, served, a).estimate
            radius = massart_radius(int(reference.sum()), a / 2)
            return edges - radius - dkw_radius(int(served.sum()), a / 2) > delta

        low, high = -20.0, 0.0  # log10 alpha
        if not clears(1.0 - 1e-9):
            return 1.0
        for _ in range(36):
            middle = (low + high) / 2
            low, high = (low, middle) if clears(10**middle) else (middle, high)
        return float(10**high)

    p = np.array([p_value(name) for name in reference])
    expected = stats.false_discovery_control(p, method="by") <= alpha
    assert [f.drifted for f in found.features] == expected.tolist()
    assert 3 <= sum(expected) < len(shifts)  # the test has something to get wrong both ways


def test_massarts_radius_holds_its_alpha_at_a_fixed_size() -> None:
    """By simulation: the sup distance of 400 uniform draws from their CDF exceeds the radius
    at most alpha of the time (and the radius is not loose by much: it is exceeded at all)."""
    rng = np.random.default_rng(9)
    n, alpha = 400, 0.2
    draws = np.sort(rng.random((4_000, n)), axis=1)
    steps = np.arange(1, n + 1) / n
    sup = np.max(np.maximum(steps - draws, draws - (steps - 1 / n)), axis=1)
    exceeded = float(np.mean(sup > massart_radius(n, alpha)))
    assert 0.05 < exceeded <= alpha
    assert massart_radius(n, alpha) == pytest.approx(math.sqrt(math.log(2 / alpha) / (2 * n)))


def test_by_levels() -> None:
    levels = by_levels(0.05, 4)
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert levels == pytest.approx([0.05 * k / (4 * harmonic) for k in (1, 2, 3, 4)])


def test_the_verdict_compares_the_drifted_share() -> None:
    rng = np.random.default_rng(6)
    reference = FeatureReference({f"x{i}": rng.normal(size=20_000) for i in range(4)})
    same, moved = FeatureCounts(reference), FeatureCounts(reference)
    same.add(rows_of({f"x{i}": rng.normal(size=6_000) for i in range(4)}))
    moved.add(rows_of({f"x{i}": rng.normal(1.0 if i < 2 else 0.0, size=6_000) for i in range(4)}))
    assert input_drift(same).verdict == "pass"
    assert input_drift(moved, max_share=0.5).verdict == "fail"
    assert input_drift(moved, max_share=0.75).verdict == "pass"  # 2 of 4 < 3 of 4
    few = FeatureCounts(reference)
    few.add(rows_of({f"x{i}": rng.normal(3.0, size=50) for i in range(4)}))
    assert input_drift(few, min_n=100).verdict == "inconclusive"
    assert input_drift(few, min_n=100).drifted == 0


def test_counts_are_the_first_rows_only() -> None:
    counts = FeatureCounts(FeatureReference({"x": list(range(100))}), max_rows=150)
    counts.add({"x": 1} for _ in range(100))
    counts.add({"x": 2} for _ in range(100))
    assert counts.full and counts.n_rows == 150 and counts.counts["x"].sum() == 150


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: input_drift(c, delta=0.0), "delta"),
        (lambda c: input_drift(c, max_share=1.5), "max_share"),
        (lambda c: input_drift(c, alpha=0.0), "alpha"),
    ],
)
def test_bad_arguments_name_themselves(call: object, field: str) -> None:
    counts = FeatureCounts(FeatureReference({"x": list(range(100))}))
    with pytest.raises(ValueError, match=field):
        call(counts)  # type: ignore[operator]
    with pytest.raises(ValueError, match="columns"):
        FeatureReference({})
    with pytest.raises(ValueError, match="max_rows"):
        FeatureCounts(counts.reference, max_rows=0)


def simulate(runs: int, looks: int, seed: int) -> tuple[float, float, float]:
    """Features at the margin (KS exactly 0.1: flagging one is a false discovery) and beyond
    it, looked at every 250 rows: the false discovery proportion at the first look that flags
    anything (and at the last look), averaged over runs; and the share of the drifted
    features found at the end."""
    rng = np.random.default_rng(seed)
    shifts = [0.0] * 4 + [AT_MARGIN] * 8 + [0.8] * 4
    null = [s <= AT_MARGIN for s in shifts]
    first_fdp, last_fdp, power = [], [], []
    for _ in range(runs):
        reference = FeatureReference({f"x{i}": rng.normal(size=10_000) for i in range(len(shifts))})
        counts = FeatureCounts(reference)
        first = math.nan
        for _ in range(looks):
            counts.add(rows_of({f"x{i}": rng.normal(s, size=250) for i, s in enumerate(shifts)}))
            flags = [f.drifted for f in input_drift(counts).features]
            fdp = sum(f and n for f, n in zip(flags, null, strict=True)) / max(1, sum(flags))
            if math.isnan(first) and any(flags):
                first = fdp
        first_fdp.append(0.0 if math.isnan(first) else first)
        last_fdp.append(fdp)
        power.append(sum(f and not n for f, n in zip(flags, null, strict=True)) / 4)
    return float(np.mean(first_fdp)), float(np.mean(last_fdp)), float(np.mean(power))


def test_the_false_discovery_rate_at_every_look_quick() -> None:
    first, last, power = simulate(runs=12, looks=8, seed=7)
    assert first <= 0.05 and last <= 0.05
    assert power == 1.0  # 0.8 sd is KS 0.31: found by 2,000 rows


@pytest.mark.long_coverage  # 40 s; the quick version above runs in the suite
def test_the_false_discovery_rate_at_every_look() -> None:
    first, last, power = simulate(runs=200, looks=16, seed=8)
    assert first <= 0.05 and last <= 0.05
    assert power == 1.0
