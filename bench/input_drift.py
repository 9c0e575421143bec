"""Input-drift benchmark: our per-feature drift test against Evidently's DataDriftPreset, same data.

``python bench/input_drift.py [--quick] [--runs 200] [--runs-drift 50] [--workers 2] [--seed 7]``

Two methods judge the same reference and serving samples (seeded):

- ours: :func:`monitors.features.input_drift` at its defaults (alpha 0.05, delta 0.1,
  max_share 0.5) on a :class:`~monitors.features.FeatureReference` of the reference and a
  :class:`~monitors.features.FeatureCounts` the serving rows are added to, row dicts, as the
  manager feeds it;
- Evidently 0.7: ``DataDriftPreset()`` at its defaults: each column's default test and
  threshold, dataset drift when at least half the columns (``drift_share`` 0.5) drifted. The
  runs call what the preset's ``ValueDrift`` metrics call per column (Evidently's own
  ``get_stattest``, then the test it returns) without the plots that make a report cost 4 to
  6 s; before the runs (not with ``--quick``), ``Report([DataDriftPreset()]).run(...)`` itself
  judges three samples and must give the same scores and drifted count, else the benchmark
  exits 1. A column's test sees only that column, so in a drift scenario the unshifted
  columns keep their no-drift results and only the shifted ones are tested again.

They do not test the same hypothesis, so they do not mean the same by "drift":

- Evidently flags a column when, with at most 1,000 reference rows, a test of *identical
  distributions* rejects: a KS p-value (numbers) or chi-square p-value (categories) below
  0.05, each column alone, at one look; with more, when a distance *estimate* is 0.1 or more
  (Wasserstein normed by the reference's sd for numbers, Jensen-Shannon for categories), no
  error bound;
- ours flags a feature whose KS (numbers) or total-variation (categories) distance from the
  reference is *proven beyond delta = 0.1*: anytime-valid bounds on both samples, the flags
  Benjamini-Yekutieli's at alpha 0.05 across features (the expected share of wrong flags among
  the flagged at most 5%, at any look). ``fail`` (dataset drift) when the flagged are at least
  half the features; ``pass`` when the features not proven within delta are fewer than half.

Data: the 30 features of scikit-learn's breast-cancer data set (569 rows), reference and serving
rows drawn from them with replacement: reference 284 rows (the demo's training half) or 5,000;
serving 150, 1,200 and 5,000 rows (the first rows of one serving stream). And, for larger sizes,
a synthetic set: 24 standard normal features and 6 categorical ones (a standard normal cut into
five categories at -1, -0.3, 0.3, 1), reference 20,000 rows, serving 5,000 and 20,000.

Scenarios: no drift (reference and serving from the same rows), and k = 3 or 20 of the 30
features (chosen at random per run) shifted by 0.5 or 1.0 standard deviations (of the 569 rows;
a categorical feature's normal before its cut). In every run the scenarios share the reference
and the serving draw before the shift.

Runs (defaults): 200 no-drift and 50 drift runs per breast-cancer reference size, an eighth
as many of the synthetic set. A rate of 0 in 200 runs has the 95% Wilson interval [0, 1.9%];
a rate near 0.5 one of about +-7 points (the tables print every interval).

Prints progress to stderr, then:

1. no drift: per method, the mean and median count of columns flagged, how often any is, and
   how often each declares dataset drift (with ours, how often it passes); ours under repeated
   looks, every 250 serving rows to 5,000 (20 looks): how often any feature is ever flagged (at
   the global null the false discovery rate is the chance of any flag: BY holds it to 5%);
2. real drift: the shifted columns found (of k), the false flags, the share of runs declaring
   dataset drift, per method and serving size;
3. the cost of ours at 30 features and 5,000 rows each side (and of Evidently's tests);

and last one JSON line. No drift, at the worst breast-cancer cell, ``{"ours": .., "evidently":
..}``: ``no_drift_columns_flagged_median``, ``no_drift_columns_flagged_mean``,
``dataset_drift_rate_no_drift`` (and ``_ci95``), ``any_flag_one_look_no_drift``,
``no_drift_worst_cell``; ours: ``any_flag_over_20_looks`` (the worst reference; ``_ci95``,
``_by_reference``). Drift: ``found_share`` (shifted columns flagged, per method, shift,
reference and serving size), ``dataset_drift_rate_k20`` (likewise), ``dataset_drift_rate_k3_max``
(3 of 30 is no dataset drift: every declaration is wrong), ``false_flags_per_run_drift_max``.
Costs (ms, medians): ``ours_ms_per_call``, ``ours_ms_per_call_drift_k20``,
``ours_count_ms_per_5000_rows``, ``ours_reference_ms_5000_rows``, ``evidently_ms_per_call``;
``evidently_report_s``, ``evidently_path_checked``, ``runs``, ``seconds``.

``--quick``: 10 no-drift and 3 drift runs per breast-cancer reference size, no synthetic set,
no report check (about 20 s on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitors.features import FeatureCounts, FeatureReference, input_drift

FloatArray = npt.NDArray[np.float64]
LOOK = 250  # serving rows between repeated looks
LOOKS_TO = 5_000  # repeated looks up to this many serving rows (20 looks)
DRIFT_SHARE = 0.5  # Evidently's default, and our max_share
CUTS = np.array([-1.0, -0.3, 0.3, 1.0])  # a synthetic categorical feature's cut points
LEVELS = np.array(list("abcde"))
SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL = 24, 6
METHODS = ("ours", "evidently")
QUICK_RUNS = (10, 3)  # no-drift and drift runs per reference size with --quick
SYNTHETIC_SHARE = 8  # the synthetic set gets this fraction of the breast-cancer runs


@dataclass(frozen=True)
class Scenario:
    name: str
    shift_sd: float  # 0: no drift
    k: int  # features shifted


SCENARIOS = (
    Scenario("no drift", 0.0, 0),
    Scenario("+0.5 sd, k=3", 0.5, 3),
    Scenario("+0.5 sd, k=20", 0.5, 20),
    Scenario("+1.0 sd, k=3", 1.0, 3),
    Scenario("+1.0 sd, k=20", 1.0, 20),
)


class Source:
    """Where the rows come from: draws of the latent matrix (rows x 30 numbers) and the frame
    the methods see (a categorical feature's numbers cut into categories)."""

    def __init__(self, name: str, seed_id: int) -> None:
        self.name = name
        self.seed_id = seed_id
        if name == "breast":
            from sklearn.datasets import load_breast_cancer

            frame = load_breast_cancer(as_frame=True).data
            self.names: list[str] = [str(c) for c in frame.columns]
            self.rows: FloatArray = frame.to_numpy(dtype=np.float64)
            self.sd: FloatArray = self.rows.std(axis=0)
            self.categorical: list[int] = []
        else:
            m = SYNTHETIC_NUMERIC + SYNTHETIC_CATEGORICAL
            self.names = [f"x{j:02d}" for j in range(SYNTHETIC_NUMERIC)]
            self.names += [f"c{j:02d}" for j in range(SYNTHETIC_CATEGORICAL)]
            self.rows = np.empty((0, m))
            self.sd = np.ones(m)
            self.categorical = list(range(SYNTHETIC_NUMERIC, m))

    def draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        if self.rows.size:
            return self.rows[rng.integers(0, len(self.rows), n)]
        return rng.standard_normal((n, len(self.names)))

    def frame(self, latent: FloatArray) -> pd.DataFrame:
        """The features as the methods see them (a categorical one: its normal, cut)."""
        return pd.DataFrame(
            {
                name: LEVELS[np.digitize(latent[:, j], CUTS)]
                if j in self.categorical
                else latent[:, j]
                for j, name in enumerate(self.names)
            }
        )


def columns_of(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Each feature's values as Python objects (what a request's JSON decodes to)."""
    return {str(name): frame[name].tolist() for name in frame.columns}


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The serving rows as the manager counts them: one dict per request."""
    names, values = list(frame.columns), columns_of(frame).values()
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


@dataclass(frozen=True)
class Setting:
    source: str
    n_reference: int
    serving: tuple[int, ...]  # serving sizes judged (prefixes of one stream)
    runs: int
    runs_drift: int

    @property
    def label(self) -> str:
        return f"{self.source} r{self.n_reference}"


@dataclass(frozen=True)
class Record:
    """One method's judgement of one serving prefix in one run."""

    setting: str
    scenario: str
    n_serving: int
    method: str
    flagged: int
    found: int  # flagged among the shifted
    dataset_drift: bool  # Evidently: share >= 0.5; ours: verdict "fail"
    passed: bool = False  # ours: verdict "pass"
    ever_flagged: bool | None = None  # ours, no drift: any flag over the repeated looks


@dataclass(frozen=True)
class Task:
    setting: Setting
    run: int
    seed: int


_SOURCES: dict[str, Source] = {}


def source_of(name: str) -> Source:
    if name not in _SOURCES:
        _SOURCES[name] = Source(name, len(_SOURCES) + 1)
    return _SOURCES[name]


def evidently_tests() -> tuple[Any, Any]:
    """Evidently's default test chooser and its column types (imported lazily: 3 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType
    return get_stattest, ColumnType


def evidently_columns(
    reference: pd.DataFrame, serving: pd.DataFrame, names: Sequence[str]
) -> dict[str, tuple[float, bool]]:
    """Each column's (score, drifted) as the preset's ``ValueDrift`` computes it: the default
    test for the column's type and sizes, at its default threshold."""
    get_stattest, column_type = evidently_tests()
    out: dict[str, tuple[float, bool]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            kind = column_type.Numerical
            if reference[name].dtype.kind not in "iuf":
                kind = column_type.Categorical
            test = get_stattest(reference[name], serving[name], kind, None)
            result = test(reference[name], serving[name], kind, None)
            out[name] = (float(result.drift_score), bool(result.drifted))
    return out


def evidently_report(
    reference: pd.DataFrame, serving: pd.DataFrame
) -> tuple[int, dict[str, float]]:
    """``Report([DataDriftPreset()])`` itself: the drifted count and each column's score."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(current_data=serving, reference_data=reference)
        metrics = snapshot.dict()["metrics"]
    count = next(int(m["value"]["count"]) for m in metrics if "drift_share" in m["config"])
    scores = {m["config"]["column"]: float(m["value"]) for m in metrics if "column" in m["config"]}
    return count, scores


def run_task(task: Task) -> list[Record]:
    """One run of a setting: a reference, a serving stream, every scenario on it."""
    setting, source = task.setting, source_of(task.setting.source)
    rng = np.random.default_rng([task.seed, source.seed_id, setting.n_reference, task.run])
    reference = source.draw(rng, setting.n_reference)
    stream = source.draw(rng, max(max(setting.serving), LOOKS_TO))
    order = rng.permutation(len(source.names))
    reference_frame = source.frame(reference)
    ours_reference = FeatureReference(columns_of(reference_frame))
    scenarios = SCENARIOS if task.run < setting.runs_drift else SCENARIOS[:1]
    records: list[Record] = []
    unshifted: dict[int, dict[str, tuple[float, bool]]] = {}  # Evidently, per serving size
    for scenario in scenarios:
        shifted = sorted(int(j) for j in order[: scenario.k])
        served = stream.copy()
        served[:, shifted] += scenario.shift_sd * source.sd[shifted]
        frame = source.frame(served)
        names_shifted = {source.names[j] for j in shifted}
        records += _ours(setting, scenario, ours_reference, rows_of(frame), names_shifted)
        for n in setting.serving:
            to_test = source.names if not scenario.k else sorted(names_shifted)
            found = evidently_columns(reference_frame, frame.iloc[:n], to_test)
            if not scenario.k:
                unshifted[n] = found
            drifted = {name for name, (_, d) in (unshifted[n] | found).items() if d}
            records.append(
                Record(
                    setting.label,
                    scenario.name,
                    n,
                    "evidently",
                    len(drifted),
                    len(drifted & names_shifted),
                    len(drifted) >= DRIFT_SHARE * len(source.names),
                )
            )
    return records


def _ours(
    setting: Setting,
    scenario: Scenario,
    reference: FeatureReference,
    rows: Sequence[dict[str, Any]],
    shifted: set[str],
) -> list[Record]:
    """Our judgement at every serving size; with no drift, also at every ``LOOK`` rows."""
    counts = FeatureCounts(reference)
    looks = set(setting.serving)
    if not scenario.k:
        looks |= set(range(LOOK, LOOKS_TO + 1, LOOK))
    ever = False
    out: list[Record] = []
    for look in sorted(looks):
        counts.add(rows[counts.n_rows : look])
        result = input_drift(counts)
        drifted = {f.name for f in result.features if f.drifted}
        if look <= LOOKS_TO and look % LOOK == 0:
            ever = ever or bool(drifted)
        if look in setting.serving:
            out.append(
                Record(
                    setting.label,
                    scenario.name,
                    look,
                    "ours",
                    len(drifted),
                    len(drifted & shifted),
                    result.verdict == "fail",
                    result.verdict == "pass",
                )
            )
    if not scenario.k:
        out.append(
            Record(setting.label, scenario.name, LOOKS_TO, "looks", 0, 0, False, False, ever)
        )
    return out


def simulate(settings: Sequence[Setting], seed: int, workers: int) -> list[Record]:
    tasks = [Task(s, run, seed) for s in settings for run in range(max(s.runs, s.runs_drift))]
    records: list[Record] = []
    started = time.monotonic()

    def progress(done: int) -> None:
        if done % 10 == 0 or done == len(tasks):
            print(
                f"\r  {done:>5}/{len(tasks)} runs, {time.monotonic() - started:5.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for done, found in enumerate(pool.imap_unordered(run_task, tasks), start=1):
                records += found
                progress(done)
    else:
        for done, task in enumerate(tasks, start=1):
            records += run_task(task)
            progress(done)
    print(file=sys.stderr)
    return records


def check_evidently(seed: int) -> tuple[int, float, float]:
    """Run ``Report([DataDriftPreset()])`` on a few samples; exit 1 unless our calls of
    Evidently's tests give its scores and its drifted count. (reports, max |diff|, s/report)"""
    cases = [
        ("breast", 284, 150, 1.0, 20),
        ("breast", 5_000, 150, 0.0, 0),
        ("synthetic", 20_000, 5_000, 0.5, 20),
    ]
    worst, seconds = 0.0, 0.0
    rng = np.random.default_rng(seed)
    for name, n_reference, n_serving, shift_sd, k in cases:
        source = source_of(name)
        reference = source.frame(source.draw(rng, n_reference))
        served = source.draw(rng, n_serving)
        shifted = rng.permutation(len(source.names))[:k]
        served[:, shifted] += shift_sd * source.sd[shifted]
        serving = source.frame(served)
        started = time.perf_counter()
        count, scores = evidently_report(reference, serving)
        seconds += time.perf_counter() - started
        ours = evidently_columns(reference, serving, source.names)
        mine = sum(d for _, d in ours.values())
        diff = max(abs(scores[c] - ours[c][0]) for c in source.names)
        worst = max(worst, diff)
        if count != mine or diff > 1e-9:
            sys.exit(
                f"Evidently check failed on {name} r{n_reference} n{n_serving}: the report "
                f"counts {count} drifted columns, our calls {mine}; largest score diff {diff:g}"
            )
    return len(cases), worst, seconds / len(cases)


def costs(seed: int, repeats: int) -> dict[str, float]:
    """Milliseconds, the median of ``repeats`` timings: ours (a call of ``input_drift``;
    counting 5,000 rows; freezing the reference) and Evidently's 30 tests, at 30 features and
    5,000 rows each side."""
    source = source_of("breast")
    rng = np.random.default_rng(seed)
    reference_frame = source.frame(source.draw(rng, 5_000))
    served = source.draw(rng, 5_000)
    drifted = served.copy()
    drifted[:, :20] += source.sd[:20]

    def median_ms(call: Callable[..., object], *args: Any) -> float:
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            call(*args)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings) * 1e3

    columns = columns_of(reference_frame)
    out = {"ours_reference_ms": median_ms(FeatureReference, columns)}
    reference = FeatureReference(columns)
    for label, latent in (("no_drift", served), ("drift_k20", drifted)):
        frame = source.frame(latent)
        rows = rows_of(frame)
        out[f"ours_count_ms_{label}"] = median_ms(count, reference, rows)
        counts = count(reference, rows)
        out[f"ours_call_ms_{label}"] = median_ms(input_drift, counts)
        out[f"evidently_ms_{label}"] = median_ms(
            evidently_columns, reference_frame, frame, source.names
        )
    return out


def count(reference: FeatureReference, rows: Sequence[dict[str, Any]]) -> FeatureCounts:
    counts = FeatureCounts(reference)
    counts.add(rows)
    return counts


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of ``k`` successes in ``n`` (scipy's; (0, 1) for no runs)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return (float(ci.low), float(ci.high))


Cell = tuple[str, str, int, str]  # setting, scenario, serving rows, method


def group(records: Sequence[Record]) -> dict[Cell, list[Record]]:
    cells: dict[Cell, list[Record]] = {}
    for r in records:
        cells.setdefault((r.setting, r.scenario, r.n_serving, r.method), []).append(r)
    return cells


def _rate(hits: int, n: int) -> str:
    low, high = wilson(hits, n)
    return f"{hits / n:.3f} [{low:.3f},{high:.3f}]"


@dataclass(frozen=True)
class Stats:
    """One method's figures in one cell (setting, scenario, serving rows)."""

    setting: str
    scenario: Scenario
    n_serving: int
    method: str
    runs: int
    flagged_mean: float
    flagged_median: float
    any_flagged: int
    found_mean: float
    false_mean: float
    dataset_drift: int
    passed: int

    @property
    def drift_rate(self) -> float:
        return self.dataset_drift / self.runs


def stats(settings: Sequence[Setting], records: Sequence[Record]) -> list[Stats]:
    cells = group(records)
    out = []
    for s in settings:
        for scenario in SCENARIOS:
            for n in s.serving:
                for method in METHODS:
                    rs = cells.get((s.label, scenario.name, n, method), [])
                    if not rs:
                        continue
                    flagged = [r.flagged for r in rs]
                    out.append(
                        Stats(
                            s.label,
                            scenario,
                            n,
                            method,
                            len(rs),
                            statistics.fmean(flagged),
                            statistics.median(flagged),
                            sum(f > 0 for f in flagged),
                            statistics.fmean(r.found for r in rs),
                            statistics.fmean(r.flagged - r.found for r in rs),
                            sum(r.dataset_drift for r in rs),
                            sum(r.passed for r in rs),
                        )
                    )
    return out


def report(
    settings: Sequence[Setting], records: Sequence[Record], cost: dict[str, float]
) -> dict[str, Any]:
    """Print the three tables; return the JSON line's figures."""
    table = stats(settings, records)
    null = [c for c in table if not c.scenario.k]
    print("1. No drift: reference and serving rows drawn from the same rows")
    head = f"{'data':<18}{'serving':>8} | {'method':<10}{'flagged mean':>13}{'median':>8}"
    print(f"{head}  {'any flagged':<22}{'dataset drift':<22}pass")
    for c in null:
        passed = f"{c.passed / c.runs:.3f}" if c.method == "ours" else "-"
        print(
            f"{c.setting:<18}{c.n_serving:>8} | {c.method:<10}{c.flagged_mean:>13.2f}"
            f"{c.flagged_median:>8.1f}  {_rate(c.any_flagged, c.runs):<22}"
            f"{_rate(c.dataset_drift, c.runs):<22}{passed}"
        )
    print(f"\n   ours under repeated looks (every {LOOK} serving rows to {LOOKS_TO:,}):")
    cells = group(records)
    looks: dict[str, tuple[int, int]] = {}
    for s in settings:
        rs = cells[(s.label, "no drift", LOOKS_TO, "looks")]
        ever = sum(bool(r.ever_flagged) for r in rs)
        looks[s.label] = (ever, len(rs))
        print(
            f"   {s.label:<18} any feature ever flagged: {ever}/{len(rs)} = {_rate(ever, len(rs))}"
        )

    print("\n2. Real drift: k of 30 features shifted; found = shifted columns flagged (of k)")
    head = f"{'data':<18}{'scenario':<15}{'serving':>8} | "
    head += " | ".join(f"{m + ': found':>16}{'false':>7}  {'dataset drift':<22}" for m in METHODS)
    print(head)
    drift = [c for c in table if c.scenario.k]
    for c in drift:
        if c.method != METHODS[0]:
            continue
        parts = [
            f"{d.found_mean:>16.2f}{d.false_mean:>7.2f}  {_rate(d.dataset_drift, d.runs):<22}"
            for d in drift
            if (d.setting, d.scenario, d.n_serving) == (c.setting, c.scenario, c.n_serving)
        ]
        print(f"{c.setting:<18}{c.scenario.name:<15}{c.n_serving:>8} | " + " | ".join(parts))

    print("\n3. Cost at 30 features, 5,000 reference and 5,000 serving rows (breast cancer)")
    for label in ("no_drift", "drift_k20"):
        print(
            f"   {label:<10} ours input_drift {cost[f'ours_call_ms_{label}']:6.1f} ms a call; "
            f"counting 5,000 rows {cost[f'ours_count_ms_{label}']:6.1f} ms; "
            f"Evidently's 30 tests {cost[f'evidently_ms_{label}']:6.1f} ms"
        )
    print(f"   ours: freezing the 5,000-row reference {cost['ours_reference_ms']:.1f} ms")
    print(
        "\nNot the same hypothesis. Evidently: a column drifted when its test rejects identical "
        "distributions (reference <= 1,000 rows: KS or chi-square p < 0.05, each column "
        "alone, one look) or its distance estimate is >= 0.1 (larger references: Wasserstein/sd, "
        "Jensen-Shannon; no error bound). Ours: a feature drifted when its KS/TV distance is "
        "proven > 0.1 (anytime-valid bounds, BY at 0.05 across features, any look). Dataset "
        "drift: at least half the columns drifted (ours: verdict fail; pass: fewer than half "
        "not proven within 0.1). [a, b]: 95% Wilson intervals."
    )
    return _summary(table, looks, cost)


def _summary(
    table: Sequence[Stats], looks: dict[str, tuple[int, int]], cost: dict[str, float]
) -> dict[str, Any]:
    """The headline figures: no-drift ones at the worst cell of the most-run data (breast
    cancer), drift ones per cell, costs."""
    most = max(c.runs for c in table if not c.scenario.k)
    null = [c for c in table if not c.scenario.k and c.runs == most]
    out: dict[str, Any] = {}

    def worst(key: Callable[[Stats], float]) -> dict[str, Stats]:
        return {m: max((c for c in null if c.method == m), key=key) for m in METHODS}

    by_median = worst(lambda c: c.flagged_median)
    by_mean = worst(lambda c: c.flagged_mean)
    by_drift = worst(lambda c: c.drift_rate)
    by_any = worst(lambda c: c.any_flagged / c.runs)
    out["no_drift_columns_flagged_median"] = {m: c.flagged_median for m, c in by_median.items()}
    out["no_drift_columns_flagged_mean"] = {m: round(c.flagged_mean, 3) for m, c in by_mean.items()}
    out["dataset_drift_rate_no_drift"] = {m: round(c.drift_rate, 4) for m, c in by_drift.items()}
    out["dataset_drift_rate_no_drift_ci95"] = {
        m: [round(x, 4) for x in wilson(c.dataset_drift, c.runs)] for m, c in by_drift.items()
    }
    out["any_flag_one_look_no_drift"] = {
        m: round(c.any_flagged / c.runs, 4) for m, c in by_any.items()
    }
    out["no_drift_worst_cell"] = {m: f"{c.setting} n{c.n_serving}" for m, c in by_drift.items()}
    ever, runs = max(looks.values(), key=lambda v: (v[0] / v[1], v[1]))
    out["any_flag_over_20_looks"] = round(ever / runs, 4)
    out["any_flag_over_20_looks_ci95"] = [round(x, 4) for x in wilson(ever, runs)]
    out["any_flag_over_20_looks_by_reference"] = {k: f"{e}/{n}" for k, (e, n) in looks.items()}
    drift = [c for c in table if c.scenario.k]
    found: dict[str, Any] = {}
    rate: dict[str, Any] = {}
    for c in drift:
        shift = f"{c.scenario.shift_sd}sd"
        cell = found.setdefault(c.method, {}).setdefault(shift, {}).setdefault(c.setting, {})
        both = [
            d
            for d in drift
            if (d.method, d.scenario.shift_sd, d.setting, d.n_serving)
            == (c.method, c.scenario.shift_sd, c.setting, c.n_serving)
        ]
        shifted = sum(d.scenario.k * d.runs for d in both)
        cell[str(c.n_serving)] = round(sum(d.found_mean * d.runs for d in both) / shifted, 3)
        if c.scenario.k >= DRIFT_SHARE * 30:
            place = rate.setdefault(c.method, {}).setdefault(shift, {}).setdefault(c.setting, {})
            place[str(c.n_serving)] = round(c.drift_rate, 3)
    out["found_share"] = found
    out["dataset_drift_rate_k20"] = rate
    out["dataset_drift_rate_k3_max"] = {
        m: round(max(c.drift_rate for c in drift if c.method == m and c.scenario.k == 3), 3)
        for m in METHODS
    }
    out["false_flags_per_run_drift_max"] = {
        m: round(max(c.false_mean for c in drift if c.method == m), 2) for m in METHODS
    }
    out["ours_ms_per_call"] = round(cost["ours_call_ms_no_drift"], 2)
    out["ours_ms_per_call_drift_k20"] = round(cost["ours_call_ms_drift_k20"], 2)
    out["ours_count_ms_per_5000_rows"] = round(cost["ours_count_ms_no_drift"], 1)
    out["ours_reference_ms_5000_rows"] = round(cost["ours_reference_ms"], 1)
    out["evidently_ms_per_call"] = round(cost["evidently_ms_no_drift"], 1)
    return out


def plan(quick: bool, runs: int, runs_drift: int) -> list[Setting]:
    """The settings: no-drift and drift runs of each (a synthetic run costs 3 to 7 s)."""
    if quick:
        runs, runs_drift = QUICK_RUNS
    settings = [
        Setting("breast", 284, (150, 1_200, 5_000), runs, runs_drift),
        Setting("breast", 5_000, (150, 1_200, 5_000), runs, runs_drift),
    ]
    if not quick:
        synthetic = (max(1, runs // SYNTHETIC_SHARE), max(1, runs_drift // SYNTHETIC_SHARE))
        settings.append(Setting("synthetic", 20_000, (5_000, 20_000), *synthetic))
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 + 3 breast-cancer runs")
    parser.add_argument("--runs", type=int, default=200, help="no-drift runs per reference size")
    parser.add_argument("--runs-drift", type=int, default=50, help="runs of the drift scenarios")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.monotonic()
    evidently_tests()  # imported once, before the workers fork
    checked, diff, report_s = 0, math.nan, math.nan
    if not args.quick:
        print("checking our calls of Evidently's tests against its Report ...", file=sys.stderr)
        checked, diff, report_s = check_evidently(args.seed)
    settings = plan(args.quick, args.runs, args.runs_drift)
    records = simulate(settings, args.seed, args.workers)
    out = report(settings, records, costs(args.seed, 3 if args.quick else 9))
    if checked:
        out["evidently_report_s"] = round(report_s, 2)
        out["evidently_path_checked"] = {"reports": checked, "max_abs_score_diff": diff}
    out["runs"] = {s.label: {"no_drift": s.runs, "drift": s.runs_drift} for s in settings}
    out["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
