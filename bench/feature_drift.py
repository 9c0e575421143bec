"""How many feature columns are flagged when nothing drifted, as in the demo's v3 report (issue 12).

``python bench/feature_drift.py [--runs 20] [--permutations 200] [--seed 0]``

The demo replays its serving rows (the breast-cancer data set's 285 serving rows,
:func:`rollout.demo.models.load_data`) to both arms: each request a row drawn at random, so
baseline and canary draw their 30 features from the same rows and nothing drifted. The issue's
report compared 1,198 baseline and 150 canary rows. For each of ``--runs`` seeded draws of arms
of those sizes this prints how many of the 30 features Evidently's default rule flags (as
:func:`monitors.twosample.column_drift` reproduces it) and how many ours flags
(:func:`monitors.feature_drift.compare_features`: KS or chi-square per feature,
Benjamini-Yekutieli at alpha 0.05), then the chance counts of the first draw by
``--permutations`` deals of its rows. For the first draw it also runs Evidently's own
``Report([DataDriftPreset()])`` and prints the number of drifted columns it counts, which must
equal its rule's count here, else the script exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

from monitors.feature_drift import compare_features
from rollout.demo.models import load_data

N_BASELINE, N_CANARY = 1_198, 150


def evidently_count(baseline: pd.DataFrame, canary: pd.DataFrame) -> int:
    """Evidently's own report: how many columns its DataDriftPreset counts as drifted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(current_data=canary, reference_data=baseline)
    metrics = snapshot.dict()["metrics"]
    return next(int(m["value"]["count"]) for m in metrics if "drift_share" in m["config"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = load_data().serve_X.reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    ours, theirs = [], []
    for run in range(args.runs):
        baseline = rows.iloc[rng.integers(0, len(rows), N_BASELINE)].reset_index(drop=True)
        canary = rows.iloc[rng.integers(0, len(rows), N_CANARY)].reset_index(drop=True)
        began = time.perf_counter()
        table = compare_features(
            baseline, canary, permutations=args.permutations if run == 0 else 0, seed=args.seed
        )
        took = time.perf_counter() - began
        ours.append(table.flagged)
        theirs.append(table.evidently_flagged)
        print(
            f"draw {run}: Evidently's rule flags {table.evidently_flagged} of "
            f"{len(table.features)}, ours {table.flagged} ({took:.2f} s)"
        )
        if run == 0:
            chance = table.chance
            assert chance is not None
            print(
                f"  by chance ({chance.rounds} deals of these rows): Evidently's rule median "
                f"{chance.evidently_median:g} (95th percentile {chance.evidently_p95:g}), ours "
                f"median {chance.ours_median:g} (95th percentile {chance.ours_p95:g}, any in "
                f"{chance.ours_any_share:.1%} of deals)"
            )
            counted = evidently_count(baseline, canary)
            print(f"  Evidently's own report counts {counted} drifted columns")
            if counted != table.evidently_flagged:
                print("  MISMATCH: Evidently's report and its rule's reproduction differ")
                return 1
    print(
        f"{args.runs} draws of {N_BASELINE:,} vs {N_CANARY:,} rows from the same rows: "
        f"Evidently's rule flags a median of {np.median(theirs):g} of 30 "
        f"(range {min(theirs)} to {max(theirs)}), ours a median of {np.median(ours):g} "
        f"(range {min(ours)} to {max(ours)}; any at all in {np.mean(np.array(ours) > 0):.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
