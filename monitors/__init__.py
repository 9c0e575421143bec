"""Statistical gates comparing a canary model version with the baseline serving beside it.

A pure library: numpy/scipy in, frozen `GateResult` values out. It imports nothing from
`rollout` or `router`. Every gate validates its parameters (``ValueError`` on bad ones), returns
``pass`` / ``fail`` / ``inconclusive`` (too few observations in an arm, with the count still
needed), and reports test, statistic, p-value, effect size (canary minus baseline), threshold
and n per arm.

Modules: `results` (GateResult, Verdict), `drift` (KS, chi-square, PSI, auto choice),
`operational` (error rate, latency), `quality` (accuracy on delayed labels).
"""

from monitors.drift import chi_square_test, ks_test, output_drift, psi, psi_edges
from monitors.operational import error_rate_test, latency_test
from monitors.quality import accuracy_test
from monitors.results import GateResult, Verdict

__all__ = [
    "GateResult",
    "Verdict",
    "accuracy_test",
    "chi_square_test",
    "error_rate_test",
    "ks_test",
    "latency_test",
    "output_drift",
    "psi",
    "psi_edges",
]
