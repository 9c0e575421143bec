"""What one scrape of the store's metrics costs (rollout/metrics.py), as the history grows.

``python bench/metrics_scrape.py [--store-url URL] [--runs 50]``

For each history size it fills a fresh store (a SQLite file in a temporary directory, or the
given database, which must be empty) with 20 models in 3 environments: ``history`` finished
rollouts per pair and a progressing one whose step kept ``history`` looks of 4 gates, ``history``
hourly monitoring windows of 2 versions, ``history`` delivered and 3 failed webhooks, and
``history`` audit rows; then times ``generate_latest`` over a :class:`StoreCollector` (no cache):
one warm-up, then ``runs`` scrapes. It prints one JSON line per size: the median and p90
milliseconds and the exposition's bytes. A bounded scrape costs about the same at every size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, insert

from contract.clock import ManualClock
from contract.sql.engine import open_engine
from contract.sql.schema import (
    audit_log,
    look_bounds,
    monitor_windows,
    rollout_events,
    rollouts,
    traffic_plans,
    webhook_deliveries,
)
from rollout.metrics import StoreCollector
from rollout.spec import load_spec

NOW = 1_800_000_000.0
MODELS, ENVIRONMENTS, GATES = 20, ("dev", "staging", "prod"), 4
SPEC = load_spec({"strategy": {"canary": {"steps": [{"weight": 10}]}}}).canonical_json()


def fill(engine: Engine, history: int) -> None:
    rows: dict[object, list[dict[str, object]]] = {t: [] for t in (
        rollouts, rollout_events, look_bounds, monitor_windows, traffic_plans)}  # fmt: skip
    for m in range(MODELS):
        for env in ENVIRONMENTS:
            pair = {"model": f"m{m}", "environment": env}
            for r in range(history + 1):
                rid = f"{env}-m{m}-{r}"
                active = r == history
                rows[rollouts].append(
                    {**pair, "id": rid, "strategy": "canary", "baseline_version": "1",
                     "candidate_version": "2", "spec": SPEC, "config_hash": "h",
                     "state": "progressing" if active else "succeeded", "step_index": 0,
                     "step_started_at": NOW, "created_at": NOW - history + r,
                     "updated_at": NOW, "started_by": "bench", "row_version": 0}
                )  # fmt: skip
                rows[rollout_events].append(
                    {"rollout_id": rid, "ts": NOW - history + r, "from_state": "pending",
                     "to_state": "progressing", "step_index": 0, "actor": "m", "reason": "r"}
                )  # fmt: skip
            for seq in range(history):
                for g in range(GATES):
                    rows[look_bounds].append(
                        {"rollout_id": rid, "step_index": 0, "seq": seq, "ts": NOW + seq,
                         "n_baseline": 900, "n_canary": 100, "gate": f"g{g}", "verdict": "pass",
                         "blocking": True, "estimate": 0.1, "low": 0.0, "high": 0.2,
                         "threshold": 0.3}
                    )  # fmt: skip
            for w in range(history):
                for version in ("1", "2"):
                    rows[monitor_windows].append(
                        {**pair, "version": version, "start": NOW - 3600 * (w + 1),
                         "end": NOW - 3600 * w, "requests": 100, "errors": 1, "labelled": 0,
                         "wrong": 0, "summary": "{}", "created_at": NOW}
                    )  # fmt: skip
            rows[traffic_plans].append(
                {**pair, "baseline_version": "1", "canary_version": "2", "canary_weight_pct": 10,
                 "shadow_fraction": 0.0, "generation": 1, "updated_at": NOW}
            )  # fmt: skip
    hooks = [
        {"url": "http://127.0.0.1:9/", "event": "e", "payload": "{}", "next_attempt_at": NOW,
         "status": "failed" if i < 3 else "delivered", "attempts": 1, "created_at": NOW}
        for i in range(history + 3)
    ]  # fmt: skip
    audit = [
        {"id": i + 1, "ts": NOW, "identity": "b", "verb": "v", "outcome": "allowed",
         "status_code": 200, "detail": "{}", "count": 1, "alg": "hmac-sha256",
         "prev_hash": f"{i:064x}", "hash": f"{i + 1:064x}"}
        for i in range(history)
    ]  # fmt: skip
    with engine.begin() as conn:
        for table, values in [*rows.items(), (webhook_deliveries, hooks), (audit_log, audit)]:
            for start in range(0, len(values), 5000):
                conn.execute(insert(table), values[start : start + 5000])  # type: ignore[arg-type]


def measure(engine: Engine, runs: int) -> tuple[list[float], int]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, ManualClock(NOW)))
    size = len(generate_latest(registry))  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store-url", help="an empty database (default: a SQLite file)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sizes", default="1,100", help="history sizes, comma-separated")
    args = parser.parse_args()
    for history in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.store_url or f"sqlite:///{Path(tmp) / 'store.db'}"
            engine = open_engine(url)
            try:
                fill(engine, history)
                times, size = measure(engine, args.runs)
            finally:
                if args.store_url:
                    for table in (rollouts, rollout_events, look_bounds, monitor_windows,
                                  traffic_plans, webhook_deliveries, audit_log):  # fmt: skip
                        with engine.begin() as conn:
                            conn.execute(table.delete())
                engine.dispose()
        cut = statistics.quantiles(times, n=10)
        print(json.dumps({
            "history": history, "pairs": MODELS * len(ENVIRONMENTS), "url": url.split(":")[0],
            "median_ms": round(statistics.median(times), 2), "p90_ms": round(cut[-1], 2),
            "exposition_bytes": size,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
