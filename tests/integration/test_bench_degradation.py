"""The degradation benchmark measures the product's own path with its defaults.

- Its one law-level shortcut holds: a window's slow requests drawn as Binomial(n,
  ``slow_share(bound_ms)``) are what ``rollout.degradation._bad`` counts when every request's
  latency is drawn and binned on ``LATENCY_EDGES``.
- ``bench/degradation.py --quick`` (fixed seed) keeps the three streams' false alarms within the
  product's promise (at most one per 30 days) with bounds derived from each release's reference
  period, catches p95 +30% within a few windows, and through a real Manager, store and registry
  raises nothing before the change and catches the doubled 5% error rate; its JSON line is last.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from monitors.twosample import bin_counts
from rollout.degradation import _bad
from rollout.store.monitoring import VersionWindow
from rollout.summary import LATENCY_EDGES

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import degradation as bench  # noqa: E402


def test_slow_share_is_the_share_bad_counts_request_by_request() -> None:
    rng = np.random.default_rng(7)
    n = 400_000
    for bound_ms, slowdown in ((54.0, 1.0), (54.0, 1.3), (31.7, 1.0)):
        counts = bin_counts(bench.latencies(rng, n, slowdown), LATENCY_EDGES)
        window = VersionWindow("v", n, 0, latency_counts=counts.tolist())
        ((stream, bad, requests),) = _bad(window, {"latency": {"bound_ms": bound_ms}})
        p = bench.slow_share(bound_ms, slowdown)
        assert (stream, requests) == ("latency", n)
        assert abs(bad - n * p) < 5 * math.sqrt(n * p * (1 - p)), (bound_ms, slowdown, bad, p)


def test_quick_benchmark_keeps_the_promise_and_the_product_path_catches_a_doubling() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "degradation.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    low, high = result["false_alarms_per_30_days_ci95"]
    assert low <= result["false_alarms_per_30_days"] <= high <= 1.0
    assert result["months"] == 1_000 and result["verified_windows"] > 5_000
    latency = result["scenarios"]["latency_p95_plus_30pct"]
    assert latency["p0_median"] == 0.05
    assert latency["e_detector"]["detected_share"] == 1.0
    assert latency["e_detector"]["median_delay_windows"] <= 5
    errors = result["scenarios"]["error_1_to_2pct"]
    assert 0.015 < errors["p0_median"] < 0.022  # 1.5 x the upper bound of 1%

    path = result["product_path"]
    by_model = {r["model"]: r for r in path["releases"]}
    for release in by_model.values():
        assert release["windows_kept"] == 72  # 3 days of hourly windows, none twice
        assert release["reference_windows"] == 24  # REFERENCE_MAX_WINDOWS: 12,000 at 500/h
        assert release["aa_alarms"] == 0
    five = by_model["errors-5pct"]
    assert five["windows_to_alarm"] is not None and five["windows_to_alarm"] <= 36
    assert five["alarm_streams"] == ["errors"]
    assert 0 < path["ms_per_window"] < 2_000
