"""Degradation benchmark: the e-detector against per-window alert rules, on simulated windows.

``python bench/degradation.py [--quick] [--months 20000] [--runs 2000] [--workers 2] [--seed 2026]``

After a promotion the manager watches the release in hourly windows. Here each window's traffic
follows a day/night cycle (Poisson around 300 requests at night to 3,000 by day, a 24-hour sine
starting at a random hour), and four streams are simulated, each held to its pre-change rate
``p0``:

- ``error_1_to_2pct``: failed requests, 1% then 2%;
- ``error_0.1_to_0.3pct``: 0.1% then 0.3%;
- ``latency_exceedance_5_to_10pct``: requests slower than the reference p95, 5% then 10%: what
  +30% on every latency gives when log-latencies have sd 0.75 (``P(Z > 1.645 - ln 1.3 / 0.75)``
  = 9.8%; with sd 0.5, as ``bench/decisions.py`` draws them, it gives 13%);
- ``accuracy_90_to_87pct``: wrong predictions among the 10% of requests that get a label, 10%
  then 13%.

Three detectors see the same windows: ``e_detector``, :class:`monitors.changes.ChangeDetector` at
its defaults (threshold 3 x 720: one false alarm per 30 days expected across three streams)
stepped through :func:`monitors.changes.advance`, the code its ``update`` runs; ``rate_over_2x``,
a Prometheus-style alert on each window's rate above twice ``p0``; ``binomial_0.05``, a one-sided
binomial test of each window against ``p0`` at 0.05 (repeated fixed-horizon testing, as Kayenta
does). The alert rules have no memory, so the e-detector alone restarts after an alarm.

For each stream and detector: false alarms per 30 days (720 windows) over ``--months`` months at
``p0``, with a 95% Wilson interval (alarms per window, times 720); and over ``--runs`` runs of a
week at ``p0`` then the change, the median and p90 delay in windows from the change to the first
alarm (1: the first changed window), and the share of runs alarmed within 720 windows (a run
with none counts as never: ``null`` in the JSON, ``>720`` in the table). The e-detector's
headline ``false_alarms_per_30_days`` adds its three streams a manager runs together (errors at
1%, latency, accuracy) and is held to one.

Prints progress to stderr, a table, and last one JSON line. ``--quick``: 1,000 months and 200
runs per stream (under 20 s).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitors.changes import ChangeDetector, advance

MONTH = 720  # hourly windows in 30 days
WEEK = 168  # windows at p0 before a change
HORIZON = 720  # windows watched after a change
CHUNK = 500  # runs simulated together in one job
LABEL_SHARE = 0.1
METHODS = ("e_detector", "rate_over_2x", "binomial_0.05")
MANAGER_STREAMS = ("error_1_to_2pct", "latency_exceedance_5_to_10pct", "accuracy_90_to_87pct")

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Stream:
    name: str
    p0: float  # the rate before the change, and the bound every detector holds it to
    changed: float
    labelled: bool = False  # bad events among a labelled share of the requests


STREAMS = (
    Stream("error_1_to_2pct", 0.01, 0.02),
    Stream("error_0.1_to_0.3pct", 0.001, 0.003),
    Stream("latency_exceedance_5_to_10pct", 0.05, 0.10),
    Stream("accuracy_90_to_87pct", 0.10, 0.13, labelled=True),
)


@dataclass(frozen=True)
class Job:
    stream: Stream
    runs: int
    change: int | None  # the first changed window; None: every window at p0
    seed: tuple[int, ...]  # the entropy of the job's generator


@dataclass(frozen=True)
class Done:
    job: Job
    alarms: dict[str, int]  # windows that alarmed, per method (null jobs)
    windows: int
    delays: dict[str, list[float]]  # per method, per run (change jobs; inf: never)


def requests(rng: np.random.Generator, hour: IntArray) -> IntArray:
    """Requests of a window at each run's ``hour``: 300 at night to 3,000 by day."""
    return rng.poisson(1650 + 1350 * np.sin(2 * np.pi * hour / 24)).astype(np.int64)


def run(job: Job) -> Done:
    """Every window of ``job.runs`` streams through the three detectors."""
    stream, runs = job.stream, job.runs
    rng = np.random.default_rng(list(job.seed))
    detector = ChangeDetector(stream.p0)
    rates, log_threshold = detector.rates, detector.log_threshold
    log_sr = np.full((runs, rates.size), -np.inf)
    log_cusum = np.full((runs, rates.size), -np.inf)
    start_hour = rng.integers(0, 24, runs)
    windows = MONTH if job.change is None else job.change + HORIZON
    alarms = dict.fromkeys(METHODS, 0)
    first = {method: np.full(runs, np.inf) for method in METHODS}
    for t in range(windows):
        served = requests(rng, start_hour + t)
        n = rng.binomial(served, LABEL_SHARE) if stream.labelled else served
        changed = job.change is not None and t >= job.change
        bad = rng.binomial(n, stream.changed if changed else stream.p0)
        step = advance(log_sr, log_cusum, n, bad, stream.p0, rates, log_threshold)
        log_sr, log_cusum = step.log_sr, step.log_cusum
        alarmed: dict[str, BoolArray] = {
            "e_detector": step.alarmed,
            "rate_over_2x": bad > 2 * stream.p0 * n,
            # P(Bin(n, p0) >= bad) <= 0.05 (bdtrc(k, n, p) is P(X > k))
            "binomial_0.05": (bad > 0) & (special.bdtrc(bad - 1, n, stream.p0) <= 0.05),
        }
        for method, mask in alarmed.items():
            if job.change is None:
                alarms[method] += int(np.count_nonzero(mask))
            elif changed:
                fresh = mask & np.isinf(first[method])
                first[method][fresh] = t - job.change + 1
    delays = {} if job.change is None else {m: first[m].tolist() for m in METHODS}
    return Done(job, alarms, runs * windows if job.change is None else 0, delays)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def plan(months: int, runs: int, seed: int) -> list[Job]:
    jobs: list[Job] = []
    for s, stream in enumerate(STREAMS):
        for phase, (change, total) in enumerate(((None, months), (WEEK, runs))):
            for i, first in enumerate(range(0, total, CHUNK)):
                size = min(CHUNK, total - first)
                jobs.append(Job(stream, size, change, (seed, s, phase, i)))
    return jobs


def simulate(jobs: Sequence[Job], workers: int) -> list[Done]:
    done: list[Done] = []
    started = time.monotonic()

    def progress() -> None:
        print(
            f"\r  {len(done)}/{len(jobs)} jobs ({done[-1].job.stream.name}), "
            f"{time.monotonic() - started:5.0f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for result in pool.imap_unordered(run, jobs):
                done.append(result)
                progress()
    else:
        for job in jobs:
            done.append(run(job))
            progress()
    print(file=sys.stderr)
    return done


def _sig(value: float) -> float:
    """``value`` to 4 significant digits (the JSON line stays readable)."""
    return float(f"{value:.4g}")


def _quantile(delays: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(delays), q, method="inverted_cdf"))


def report(done: Sequence[Done], seconds: float) -> dict[str, Any]:
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    rows: list[tuple[str, ...]] = []
    pooled = [0, 0]  # the e-detector's alarms and windows over the manager's three streams
    for stream in STREAMS:
        mine = [d for d in done if d.job.stream == stream]
        windows = sum(d.windows for d in mine)
        figures[stream.name] = {}
        for method in METHODS:
            alarms = sum(d.alarms[method] for d in mine)
            delays = [x for d in mine for x in d.delays.get(method, [])]
            low, high = wilson(alarms, windows)
            median, p90 = _quantile(delays, 0.5), _quantile(delays, 0.9)
            figures[stream.name][method] = {
                "false_alarms_per_30_days": _sig(alarms / windows * MONTH),
                "ci95": [_sig(low * MONTH), _sig(high * MONTH)],
                "median_delay_windows": median if math.isfinite(median) else None,
                "p90_delay_windows": p90 if math.isfinite(p90) else None,
                "detected_share": _sig(sum(math.isfinite(x) for x in delays) / len(delays)),
            }
            if method == "e_detector" and stream.name in MANAGER_STREAMS:
                pooled[0] += alarms
                pooled[1] += windows
            name = stream.name if method == METHODS[0] else ""
            rows.append((name, method, *_cells(figures[stream.name][method])))
    streams = len(MANAGER_STREAMS)
    low, high = wilson(pooled[0], pooled[1])
    out: dict[str, Any] = {
        "false_alarms_per_30_days": _sig(pooled[0] / pooled[1] * MONTH * streams),
        "false_alarms_per_30_days_ci95": [
            _sig(low * MONTH * streams),
            _sig(high * MONTH * streams),
        ],
        "false_alarm_budget_per_30_days": 1.0,
        "manager_streams": list(MANAGER_STREAMS),
        "streams": figures,
        "months_per_stream": sum(d.windows for d in done if d.job.stream == STREAMS[0]) // MONTH,
        "change_runs_per_stream": sum(
            d.job.runs for d in done if d.job.stream == STREAMS[0] and d.job.change is not None
        ),
        "seconds": round(seconds, 1),
    }
    header = ("stream", "detector", "false alarms / 30 d [95% CI]", "median", "p90", "caught")
    widths = (32, 15, 30, 8, 8, 8)
    print("".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))
    print(
        f"e-detector, the manager's three streams together: {out['false_alarms_per_30_days']:.3f}"
        f" false alarms per 30 days [{low * MONTH * streams:.3f}, {high * MONTH * streams:.3f}]"
        " (budget 1)"
    )
    return out


def _cells(figure: dict[str, Any]) -> tuple[str, ...]:
    low, high = figure["ci95"]
    rate = f"{figure['false_alarms_per_30_days']:.3f} [{low:.3f}, {high:.3f}]"

    def delay(value: float | None) -> str:
        return f">{HORIZON}" if value is None else f"{value:g}"

    caught = f"{100 * figure['detected_share']:.1f}%"
    return rate, delay(figure["median_delay_windows"]), delay(figure["p90_delay_windows"]), caught


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 months, 200 runs per stream")
    parser.add_argument("--months", type=int, default=20_000, help="30-day months per stream")
    parser.add_argument("--runs", type=int, default=2_000, help="change runs per stream")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    months, runs = (1_000, 200) if args.quick else (args.months, args.runs)
    started = time.monotonic()
    done = simulate(plan(months, runs, args.seed), args.workers)
    out = report(done, time.monotonic() - started)
    print(json.dumps(out, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
