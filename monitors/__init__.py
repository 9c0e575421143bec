"""Statistical gates comparing a canary model version with the baseline serving beside it.

A pure library: numpy/scipy in, frozen `GateResult` values out. It imports nothing from
`rollout` or `router` (Evidently only inside `reports`, for the HTML engineers read). Every
gate validates its parameters (``ValueError`` on bad ones), returns ``pass`` / ``fail`` /
``inconclusive`` (too few observations in an arm, with the count still needed), and reports
test, statistic, p-value, effect size (canary minus baseline), threshold and n per arm.

Modules: `results` (GateResult, Verdict), `drift` (output-drift gates: KS, chi-square, auto
choice), `stability` (PSI), `mean_shift` (sequential mean-shift test), `twosample` (column-level
two-sample tests, Evidently's default rule, `drift_table`), `operational` (error rate, latency),
`quality` (accuracy, AUC on delayed labels), `loss` (log-loss, MAE/RMSE on delayed labels),
`sequential` (always-valid mSPRT p-values), `shadow` (paired tests on the same requests),
`streaming` (fixed bins, moments, reservoirs), `reports` (Evidently HTML).
"""

from monitors._bins import psi_edges
from monitors.drift import chi_square_test, ks_test, output_drift
from monitors.loss import loss_test, per_request_loss
from monitors.mean_shift import mean_shift_test
from monitors.operational import error_rate_test, latency_test
from monitors.quality import accuracy_test, auc_test
from monitors.results import GateResult, Verdict
from monitors.shadow import disagreement_test, mcnemar_test, wilcoxon_test
from monitors.stability import psi
from monitors.twosample import ColumnDrift, column_drift, default_method, drift_table

__all__ = [
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
