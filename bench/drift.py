"""Drift benchmark: our column drift analysis against Evidently's DataDriftPreset, same data.

``python bench/drift.py [--rows 1000000] [--columns 20] [--shifted 6]``

Baseline and canary frames of `rows` rows x `columns` numeric columns (normal, exponential and
uniform columns; `shifted` of them moved in the canary by 0.04 to 0.3 sd, so some cross the
0.1 threshold and some do not). Both sides pick the default test per column (more than 1000
rows: Wasserstein distance normed by the baseline's std, threshold 0.1):

- ours: `monitors.twosample.drift_table` (exact W1 from sorted columns, 2 threads);
- Evidently 0.7: ``Report([DataDriftPreset()]).run(canary, baseline)``.

Prints a table, then, last, one JSON line: ``ours_s``, ``evidently_s``, ``speedup``,
``verdicts_agree`` (share of columns with the same drifted verdict), ``max_abs_diff`` (largest
difference between the two drift scores), ``peak_rss_mb`` (this process after our analysis,
before Evidently runs) and ``evidently_peak_rss_mb`` (after both).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitors.twosample import drift_table

FloatArray = npt.NDArray[np.float64]


def frames(rows: int, columns: int, shifted: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    baseline, canary = {}, {}
    shifts = np.linspace(0.04, 0.3, shifted) if shifted else np.array([])
    draws: list[Callable[[int], FloatArray]] = [
        lambda n: rng.normal(10.0, 2.0, n),
        lambda n: rng.exponential(3.0, n),
        lambda n: rng.uniform(-1.0, 1.0, n),
    ]
    for index in range(columns):
        draw = draws[index % 3]
        name = f"f{index:02d}"
        baseline[name] = draw(rows)
        values = draw(rows)
        if index < shifted:
            values = values + shifts[index] * float(np.std(baseline[name]))
        canary[name] = values
    return pd.DataFrame(baseline), pd.DataFrame(canary)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evidently_scores(baseline: pd.DataFrame, canary: pd.DataFrame) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(current_data=canary, reference_data=baseline)
        metrics = snapshot.dict()["metrics"]
    return {m["config"]["column"]: float(m["value"]) for m in metrics if "column" in m["config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--shifted", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    baseline, canary = frames(args.rows, args.columns, args.shifted, args.seed)

    started = time.perf_counter()
    ours = drift_table(baseline, canary)
    ours_s = time.perf_counter() - started
    ours_rss = peak_rss_mb()

    started = time.perf_counter()
    theirs = evidently_scores(baseline, canary)
    evidently_s = time.perf_counter() - started

    agree = [ours[c].drifted == (theirs[c] >= ours[c].threshold) for c in baseline.columns]
    diffs = [abs(ours[c].statistic - theirs[c]) for c in baseline.columns]
    print(f"{'column':8s} {'test':12s} {'ours':>10s} {'evidently':>10s} drifted")
    for column in baseline.columns:
        result = ours[column]
        print(
            f"{column:8s} {result.test:12s} {result.statistic:10.6f} {theirs[column]:10.6f} "
            f"{result.drifted}"
        )
    summary = {
        "rows": args.rows,
        "columns": args.columns,
        "ours_s": round(ours_s, 3),
        "evidently_s": round(evidently_s, 3),
        "speedup": round(evidently_s / ours_s, 1),
        "verdicts_agree": float(np.mean(agree)),
        "max_abs_diff": float(max(diffs)),
        "drifted_columns": int(sum(r.drifted for r in ours.values())),
        "peak_rss_mb": round(ours_rss, 1),
        "evidently_peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
