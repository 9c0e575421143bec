"""The monitors' lists of names, each defined once, importable without numpy or scipy.

A rollout spec names drift methods and loss metrics; the manager compares two samples (the
baseline's and the candidate's) and reads verdicts. Those modules import these names from here,
so reading a spec or a decision never loads the statistics.
"""

from __future__ import annotations

from typing import Literal, get_args

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

Arm = Literal["baseline", "canary"]
ARMS: tuple[Arm, Arm] = ("baseline", "canary")  # the two samples every gate compares

DriftMethod = Literal[
    "auto", "ks", "chi_square", "psi", "wasserstein", "jensen_shannon", "anderson", "mean_shift"
]
DRIFT_METHODS: tuple[DriftMethod, ...] = get_args(DriftMethod)

LossMetric = Literal["log_loss", "mae", "rmse"]
LOSS_METRICS: tuple[LossMetric, ...] = get_args(LossMetric)

ColumnTest = Literal["ks", "anderson", "chi_square", "z", "psi", "wasserstein", "jensen_shannon"]
COLUMN_TESTS: tuple[ColumnTest, ...] = get_args(ColumnTest)
