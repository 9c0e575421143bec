"""Retention benchmark: the manager prunes an old prediction log while the router serves.

``python bench/retention.py [--rows 600000] [--duration 20] [--rate 400]``

In one run, on loopback, with a SQLite store (the embedded default):

1. registers two versions and writes a 90/10 plan (as ``bench/router.py`` does), and fills the
   prediction log with ``--rows`` requests of 20 days ago (each with its 30 features, as the
   router logs them); ``environments.yaml`` gives ``prod`` ``retention: {days: 14}``;
2. starts the router (one worker) and drives it at a fixed ``--rate`` (requests per second,
   8 connections, ``bench/router_client.py --rate``: a latency counts from when its request was
   due, so a stall shows) for ``--duration`` seconds: *before*;
3. starts the manager (``python -m rollout manager``, its defaults: a pass every 30 s of at most
   0.5 s, every 2 s while rows are due, batches of 5,000), waits for its first pass (so its
   start-up is not measured) and drives the router the same way while it prunes: *during*;
   then waits until the old rows are gone;
4. drives the router once more: *after*.

Prints a table, then last one JSON line: the prune rate (rows deleted per second of pruning, and
per second of wall time while rows were due, from the manager's log), the router's p50/p99 and
requests per second in each phase, ``p99_during_over_outside`` (during / the mean of before
and after), the non-200 count, and whether pruning went on for the whole *during* phase.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("bench_router", HERE / "router.py")
assert _spec is not None and _spec.loader is not None
bench_router = importlib.util.module_from_spec(_spec)
sys.modules["bench_router"] = bench_router  # (its dataclasses look their module up)
_spec.loader.exec_module(bench_router)

DAY_S = 86_400.0
CONNECTIONS = 8
PRUNED = re.compile(r"retention: (\d+) rows and (\d+) labels deleted in ([0-9.]+)s")


def fill(store_url: str, rows: int, payload: bytes) -> None:
    """``rows`` requests of 20 days ago, with the payload's features, through the router's
    own writer."""
    from contract.records import PredictionRecord
    from contract.sql.engine import open_engine
    from contract.sql.predictions import SqlPredictionSink

    body = json.loads(payload)["dataframe_split"]
    features = json.dumps([dict(zip(body["columns"], body["data"][0], strict=True))])
    sink = SqlPredictionSink(open_engine(store_url))
    old = time.time() - 20 * DAY_S
    chunk = 20_000
    for first in range(0, rows, chunk):
        sink.write(
            [
                PredictionRecord(
                    request_id=f"old-{i}",
                    ts=old + i * 1e-3,
                    environment="prod",
                    model=bench_router.MODEL,
                    version="1",
                    arm="baseline",
                    rollout_id=None,
                    plan_generation=1,
                    features=features,
                    output="[1]",
                    latency_ms=2.0,
                    error=None,
                    status_code=200,
                )
                for i in range(first, min(first + chunk, rows))
            ]
        )
        print(f"\r  filled {min(first + chunk, rows):,}/{rows:,} old rows", end="", file=sys.stderr)
    print(file=sys.stderr)


def old_rows(store_url: str) -> int:
    from sqlalchemy import func, select

    from contract.sql.engine import open_engine
    from contract.sql.schema import predictions

    engine = open_engine(store_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).where(predictions.c.request_id.like("old-%"))
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def drive(port: int, body_file: Path, duration: float, rate: float) -> dict[str, Any]:
    """The router at ``rate`` requests/s for ``duration`` s (two client processes)."""
    clients = 2
    cmd = [sys.executable, str(HERE / "router_client.py"), "--port", str(port)]
    cmd += ["--body-file", str(body_file), "--connections", str(CONNECTIONS // clients)]
    cmd += ["--duration", str(duration), "--rate", str(rate / clients)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(clients)]
    parts = [json.loads(p.communicate()[0]) for p in procs]
    latencies = sorted(x for p in parts for x in p["latencies_ms"])

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "rps": sum(p["requests"] for p in parts) / max(p["seconds"] for p in parts),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "errors": sum(p["errors"] for p in parts),
    }


def bench(rows: int, duration: float, rate: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="retention-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env, payload, _ = bench_router.setup(work)
        home = Path(env["ROLLOUT_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        environments = home / "environments.yaml"
        environments.write_text("environments:\n  - {name: prod, retention: {days: 14}}\n")
        env["ROLLOUT_ENVIRONMENTS_FILE"] = str(environments)
        store_url = env["ROLLOUT_STORE_URL"]
        fill(store_url, rows, payload)
        body_file = work / "payload.json"
        body_file.write_bytes(payload)
        port = bench_router.free_port()
        router_log = work / "router.log"
        router = bench_router.start(
            [sys.executable, "-m", "router", "--log-level", "warning", "--port", str(port)],
            env,
            router_log,
        )
        processes.append(router)
        bench_router.wait_serving(port, payload, router, router_log)
        drive(port, body_file, 2.0, rate)  # warm-up
        phases: dict[str, dict[str, Any]] = {}
        print(f"  before: {duration:g} s at {rate:g} req/s", file=sys.stderr)
        phases["before"] = drive(port, body_file, duration, rate)
        manager_log = work / "manager.log"
        started = time.monotonic()
        manager = bench_router.start([sys.executable, "-m", "rollout", "manager"], env, manager_log)
        processes.append(manager)
        deadline = time.monotonic() + 120  # its start-up (imports) is not part of pruning
        while not PRUNED.search(manager_log.read_text()):
            if manager.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the manager did not prune; see {manager_log}")
            time.sleep(0.05)
        print(f"  during: {duration:g} s while the manager prunes", file=sys.stderr)
        phases["during"] = drive(port, body_file, duration, rate)
        during_end = time.monotonic()
        left = old_rows(store_url)
        deadline = time.monotonic() + 600
        while left and time.monotonic() < deadline:
            print(f"\r  {left:,} old rows left", end="", file=sys.stderr)
            time.sleep(1.0)
            left = old_rows(store_url)
        pruned_by = time.monotonic()
        print(file=sys.stderr)
        if left:
            raise SystemExit(f"{left} old rows still there after 600 s; see {manager_log}")
        print(f"  after: {duration:g} s", file=sys.stderr)
        phases["after"] = drive(port, body_file, duration, rate)
        passes = [
            (int(m.group(1)), float(m.group(3))) for m in PRUNED.finditer(manager_log.read_text())
        ]
        return report(rows, phases, passes, pruned_by - started, pruned_by >= during_end, rate)
    finally:
        for process in processes:
            bench_router.stop(process)
        shutil.rmtree(work, ignore_errors=True)


def report(
    rows: int,
    phases: dict[str, dict[str, Any]],
    passes: list[tuple[int, float]],
    wall_s: float,
    covered: bool,
    rate: float,
) -> dict[str, Any]:
    deleted = sum(n for n, _ in passes)
    busy_s = sum(s for _, s in passes)
    print(
        f"\n{rows:,} rows of 20 days ago pruned under retention days 14; router at {rate:g} req/s"
    )
    print(f"{'phase':<8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}")
    for name, phase in phases.items():
        print(
            f"{name:<8}{phase['rps']:>8.0f}{phase['p50_ms']:>9.2f}{phase['p99_ms']:>9.2f}"
            f"{phase['errors']:>9}"
        )
    outside = (phases["before"]["p99_ms"] + phases["after"]["p99_ms"]) / 2
    summary = {
        "rows": rows,
        "rows_deleted": deleted,
        "prune_passes": len(passes),
        "prune_rows_per_s": round(deleted / busy_s, 1) if busy_s else None,
        "prune_rows_per_wall_s": round(deleted / wall_s, 1),
        "prune_wall_s": round(wall_s, 1),
        "pruning_covered_during": covered,
        **{f"{name}_p99_ms": round(p["p99_ms"], 2) for name, p in phases.items()},
        **{f"{name}_p50_ms": round(p["p50_ms"], 2) for name, p in phases.items()},
        **{f"{name}_rps": round(p["rps"], 1) for name, p in phases.items()},
        "p99_during_over_outside": round(phases["during"]["p99_ms"] / outside, 3),
        "non_200": sum(p["errors"] for p in phases.values()),
        "rate": rate,
    }
    print(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=600_000, help="old rows to prune")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase")
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second")
    args = parser.parse_args()
    bench(args.rows, args.duration, args.rate)


if __name__ == "__main__":
    main()
