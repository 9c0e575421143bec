"""Statistical gates comparing a canary model version with the baseline serving beside it.

A pure library: numpy/scipy in, frozen `GateResult` values out. It imports nothing from
`rollout` or `router` (Evidently only inside `reports`, for the HTML engineers read). Every
gate validates its parameters (``ValueError`` on bad ones), returns ``pass`` / ``fail`` /
``inconclusive`` (too few observations in an arm, with the count still needed), and reports
test, statistic, p-value, effect size (canary minus baseline), threshold and n per arm.

Modules: `names` (the lists of names: verdicts, arms, drift methods, loss metrics), `results`
(GateResult), `drift` (output-drift gates: KS, chi-square, auto choice), `stability` (PSI),
`mean_shift` (sequential mean-shift test), `twosample` (column-level two-sample tests,
Evidently's default rule, `drift_table`), `operational` (error rate, latency), `quality`
(accuracy, AUC on delayed labels), `loss` (log-loss, MAE/RMSE on delayed labels), `sequential`
(always-valid mSPRT p-values), `shadow` (paired tests on the same requests), `streaming` (fixed
bins, moments, reservoirs), `reports` (Evidently HTML).

The names below load their module on first use, so ``from monitors.names import Verdict``
(reading a spec, a decision) does not import numpy or scipy; and ``scipy.stats`` (about a
second to import) is imported only where a test that needs it runs (the normal distribution
comes from ``scipy.special``, :mod:`monitors._normal`), so a look at a step with too little data
for those tests never loads it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitors._bins import psi_edges as psi_edges
    from monitors.drift import (
        chi_square_test as chi_square_test,
    )
    from monitors.drift import (
        ks_test as ks_test,
    )
    from monitors.drift import (
        output_drift as output_drift,
    )
    from monitors.loss import loss_test as loss_test
    from monitors.loss import per_request_loss as per_request_loss
    from monitors.mean_shift import mean_shift_test as mean_shift_test
    from monitors.names import Verdict as Verdict
    from monitors.operational import (
        error_rate_test as error_rate_test,
    )
    from monitors.operational import (
        latency_test as latency_test,
    )
    from monitors.quality import accuracy_test as accuracy_test
    from monitors.quality import auc_test as auc_test
    from monitors.results import GateResult as GateResult
    from monitors.shadow import (
        disagreement_test as disagreement_test,
    )
    from monitors.shadow import (
        mcnemar_test as mcnemar_test,
    )
    from monitors.shadow import (
        wilcoxon_test as wilcoxon_test,
    )
    from monitors.stability import psi as psi
    from monitors.twosample import (
        ColumnDrift as ColumnDrift,
    )
    from monitors.twosample import (
        column_drift as column_drift,
    )
    from monitors.twosample import (
        default_method as default_method,
    )
    from monitors.twosample import (
        drift_table as drift_table,
    )

_WHERE = {
    "ColumnDrift": "monitors.twosample",
    "GateResult": "monitors.results",
    "Verdict": "monitors.names",
    "accuracy_test": "monitors.quality",
    "auc_test": "monitors.quality",
    "chi_square_test": "monitors.drift",
    "column_drift": "monitors.twosample",
    "default_method": "monitors.twosample",
    "disagreement_test": "monitors.shadow",
    "drift_table": "monitors.twosample",
    "error_rate_test": "monitors.operational",
    "ks_test": "monitors.drift",
    "latency_test": "monitors.operational",
    "loss_test": "monitors.loss",
    "mcnemar_test": "monitors.shadow",
    "mean_shift_test": "monitors.mean_shift",
    "output_drift": "monitors.drift",
    "per_request_loss": "monitors.loss",
    "psi": "monitors.stability",
    "psi_edges": "monitors._bins",
    "wilcoxon_test": "monitors.shadow",
}
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'monitors' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
