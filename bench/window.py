"""Window benchmark: judging a long canary step in bounded memory.

``python bench/window.py [--rows 1000000] [--looks 20]``

Writes `rows` prediction-log rows of one rollout (90% baseline, 10% canary, the same model: a
latency, a predicted class and, for one request in ten, a label) to a SQLite store, then judges
the step window (error rate, latency, output drift, accuracy) two ways, side by side:

- ours: `PredictionLog.fold` into a `WindowSummary` (streaming, bounded) and the analysis on it;
  then `looks` further looks, each after 1,000 new rows, folding only the new rows;
- naive: what a hand-rolled script does: read the window with `pandas.read_sql`, then run the
  same monitors on the full columns; every look re-reads the whole window.

Reports the peak traced memory of each (tracemalloc) and the time of a first look and of a
later look. Prints a table, then, last, one JSON line with ``ours_peak_mb``, ``naive_peak_mb``,
``memory_ratio`` (naive / ours), ``ours_first_look_s``, ``ours_next_look_s``,
``naive_look_s``, ``next_look_speedup`` (naive look / our later look).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink
from monitors import accuracy_test, error_rate_test, latency_test, output_drift
from rollout.analysis import analyse
from rollout.spec import load_spec
from rollout.store.predictions import PredictionLog

SPEC = load_spec(
    {
        "strategy": {"linear": {"steps": 2}},
        "analysis": {
            "gates": [
                "error_rate",
                "latency",
                "output_drift",
                {"quality": {"metric": "accuracy"}},
            ]
        },
    }
)


def write_rows(engine: Engine, n: int, start: int, seed: int) -> None:
    records_sink, labels_sink = SqlPredictionSink(engine), SqlFeedbackSink(engine)
    rng = np.random.default_rng(seed)
    for first in range(0, n, 50_000):
        size = min(50_000, n - first)
        canary = rng.random(size) < 0.1
        latency = rng.lognormal(1.5, 0.4, size)
        output = (rng.random(size) < 0.6).astype(int)  # a classifier's predicted class
        label = np.where(rng.random(size) < 0.9, output, 1 - output)  # right 90% of the time
        error = rng.random(size) < 0.01
        records = [
            PredictionRecord(
                request_id=f"q{start + first + i}",
                ts=1000.0 + start + first + i,
                environment="prod",
                model="bench",
                version="2" if canary[i] else "1",
                arm="canary" if canary[i] else "baseline",
                rollout_id="r",
                plan_generation=1,
                features=None,
                output=None if error[i] else f"[{output[i]}]",
                latency_ms=float(latency[i]),
                error="boom" if error[i] else None,
                status_code=500 if error[i] else 200,
            )
            for i in range(size)
        ]
        records_sink.write(records)
        labels_sink.add_feedback(
            [
                Feedback(f"q{start + first + i}", int(label[i]), ts=1060.0 + start + first + i)
                for i in range(0, size, 10)
            ]
        )


HOLM_FIRST = 0.05 / 4  # the level our Holm correction gives each of 4 gates when all pass


def naive_look(log: PredictionLog) -> str:
    """Read the whole window into pandas and run the same monitors on full columns (at the
    level Holm gives the smallest of our four p-values, so the verdicts are comparable)."""
    query = (
        "SELECT p.arm, p.output, p.latency_ms, p.error, f.label FROM predictions p "
        "LEFT JOIN feedback f ON f.request_id = p.request_id WHERE p.rollout_id = 'r'"
    )
    with log.engine.connect() as conn:
        frame = pd.read_sql(query, conn.connection.driver_connection)
    arms = {arm: frame[frame["arm"] == arm] for arm in ("baseline", "canary")}
    ok = {arm: rows[rows["error"].isna()] for arm, rows in arms.items()}
    values = {arm: rows["output"].str.strip("[]").astype(int) for arm, rows in ok.items()}
    verdicts = [
        error_rate_test(
            int(arms["baseline"]["error"].notna().sum()),
            len(arms["baseline"]),
            int(arms["canary"]["error"].notna().sum()),
            len(arms["canary"]),
            sequential=True,
            alpha=HOLM_FIRST,
        ).verdict,
        latency_test(
            arms["baseline"]["latency_ms"],
            arms["canary"]["latency_ms"],
            sequential=True,
            alpha=HOLM_FIRST,
        ).verdict,
        output_drift(values["baseline"], values["canary"], alpha=HOLM_FIRST).verdict,
    ]
    correct = {}
    for arm, rows in ok.items():
        labelled = rows["label"].notna()
        truth = rows["label"][labelled].astype(int).to_numpy()
        correct[arm] = values[arm][labelled].to_numpy() == truth
    accuracy = accuracy_test(
        correct["baseline"], correct["canary"], sequential=True, alpha=HOLM_FIRST
    )
    verdicts.append(accuracy.verdict)
    return ",".join(verdicts)


def measured(run: Callable[[], Any]) -> tuple[Any, float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    value = run()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return value, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--looks", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{tmp}/store.db")
        log = PredictionLog(engine)
        print(f"writing {args.rows:,} rows ...", file=sys.stderr, flush=True)
        write_rows(engine, args.rows, 0, seed=1)

        def first() -> Any:
            summary = log.fold("r", since_ts=0.0)
            return summary, analyse(summary, SPEC.analysis, weight_pct=10)

        (summary, evidence), ours_first_s, ours_first_mb = measured(first)
        print(f"ours, first look: {ours_first_s:.1f} s", file=sys.stderr, flush=True)
        next_times, next_peaks = [], []
        for look in range(args.looks):
            write_rows(engine, 1000, args.rows + look * 1000, seed=100 + look)

            def later(current: Any = summary) -> Any:
                folded = log.fold("r", since_ts=0.0, summary=current)
                return folded, analyse(folded, SPEC.analysis, weight_pct=10)

            (summary, evidence), seconds, peak = measured(later)
            next_times.append(seconds)
            next_peaks.append(peak)
        naive_verdicts, naive_s, naive_mb = measured(lambda: naive_look(log))
        log.engine.dispose()
    ours_peak = max(ours_first_mb, *next_peaks)
    ours_next = float(np.median(next_times))
    ours_verdicts = ",".join(g.verdict for g in evidence.gates)
    total = args.rows + args.looks * 1000
    print(f"{'':<8}{'peak MB':>10}{'first look s':>14}{'later look s':>14}  verdicts")
    print(f"{'ours':<8}{ours_peak:>10.1f}{ours_first_s:>14.2f}{ours_next:>14.3f}  {ours_verdicts}")
    print(f"{'naive':<8}{naive_mb:>10.1f}{naive_s:>14.2f}{naive_s:>14.2f}  {naive_verdicts}")
    print(
        json.dumps(
            {
                "rows": total,
                "ours_peak_mb": round(ours_peak, 1),
                "naive_peak_mb": round(naive_mb, 1),
                "memory_ratio": round(naive_mb / ours_peak, 1),
                "ours_first_look_s": round(ours_first_s, 2),
                "ours_next_look_s": round(ours_next, 3),
                "naive_look_s": round(naive_s, 2),
                "next_look_speedup": round(naive_s / ours_next, 1),
                "verdicts_agree": ours_verdicts == naive_verdicts,
            }
        )
    )


if __name__ == "__main__":
    main()
