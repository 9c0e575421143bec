"""Decision benchmark: false rollbacks of healthy canaries, detection of degraded ones.

``python bench/decisions.py [--runs 1000] [--max-requests 20000] [--batch 100]``

Simulated rollouts with a known truth (`bench/stats_sim.py`), four gates (error rate,
latency p95, output drift, accuracy), checked after every `batch` canary requests (and as many
baseline requests) up to `max_requests`, all runs at once:

(a) A/A: canary = baseline. ``false_rollback_rate`` of our sequential gates (must be <= alpha),
    beside ``naive_false_rollback_rate``: the same data judged by fixed-horizon tests at every
    look (Kayenta's way).
(b) degraded canaries: error rate 1% -> 2%; accuracy -3 points (90% -> 87%); output mean
    +0.2 sd; latency x1.3 (p95 +30%). ``detection_rate`` (rolled back within the horizon, must
    be >= 0.95) and ``median_requests_to_detect`` (canary requests at the rollback).

Prints a table, then, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats_sim import Gates, Truth, simulate

SCENARIOS = {
    "error_rate_1_to_2pct": Truth(canary_error=0.02),
    "accuracy_minus_3pts": Truth(canary_accuracy=0.87),
    "output_mean_shift_0.2sd": Truth(output_shift_sd=0.2),
    "latency_p95_plus_30pct": Truth(latency_scale=1.3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    looks = args.max_requests // args.batch
    gates = Gates(alpha=args.alpha)
    started = time.perf_counter()

    aa = simulate(Truth(), gates, runs=args.runs, looks=looks, batch=args.batch, seed=args.seed)
    false_rate = float(np.mean(aa["sequential"] >= 0))
    detection_rates: list[float] = []
    summary: dict[str, object] = {
        "runs": args.runs,
        "looks": looks,
        "alpha": args.alpha,
        "false_rollback_rate": false_rate,
        "naive_false_rollback_rate": float(np.mean(aa["naive"] >= 0)),
    }
    print(f"A/A, {args.runs} runs, {looks} looks of {args.batch} canary requests")
    print(f"  sequential false rollback rate {summary['false_rollback_rate']:.3f}")
    print(f"  naive fixed-horizon false rollback rate {summary['naive_false_rollback_rate']:.3f}")
    for index, (name, truth) in enumerate(SCENARIOS.items(), start=1):
        result = simulate(
            truth, gates, runs=args.runs, looks=looks, batch=args.batch, seed=args.seed + index
        )
        first = result["sequential"]
        detected = first >= 0
        requests = (first[detected] + 1) * args.batch
        rate = float(np.mean(detected))
        median = float(np.median(requests)) if requests.size else None
        summary[name] = {"detection_rate": rate, "median_requests_to_detect": median}
        detection_rates.append(rate)
        print(f"  {name:28s} detection {rate:.3f}, median canary requests {median}")
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["ok"] = false_rate <= args.alpha and min(detection_rates) >= 0.95
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
