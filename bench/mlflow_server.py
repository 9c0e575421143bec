"""``mlflow server`` with and without MLflow 3's job runner: time to healthy and memory.

``python bench/mlflow_server.py [--rounds 2]``

MLflow 3 starts a job runner (huey consumers) beside ``mlflow server`` unless
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``; the registry needs none of it, and ``rollout up
--mlflow-server``, compose and ``bench/soak.py`` turn it off (``rollout.up.
MLFLOW_SERVER_ONLY_ENV``). Each round starts ``mlflow server --workers 1`` on a fresh SQLite
file both ways, alternating, and measures the seconds until ``/health`` answers and, 3 s later,
the resident memory and number of processes of its process tree (``psutil`` when installed,
else ``/proc``). Prints a line per start and a JSON line last (medians and their ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rollout.up import MLFLOW_SERVER_ONLY_ENV, free_port, venv_path_env


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def start_once(work: Path, jobs: bool) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, **venv_path_env()}
    if jobs:
        env.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", None)
    else:
        env.update(MLFLOW_SERVER_ONLY_ENV)
    db = work / f"registry-{port}.db"
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", str(work / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"mlflow server exited with {process.returncode}")
            if time.monotonic() - started > 120:
                raise SystemExit("mlflow server was not healthy within 120 s")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        healthy_s = time.monotonic() - started
        time.sleep(3)
        pids = tree(process.pid)
        return {"healthy_s": healthy_s, "rss_mib": rss_mib(pids), "processes": len(pids)}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"with_jobs": [], "without_jobs": []}
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        for round_ in range(args.rounds):
            for name, jobs in (("with_jobs", True), ("without_jobs", False)):
                got = start_once(Path(tmp), jobs)
                runs[name].append(got)
                print(
                    f"round {round_ + 1} {name:>12}: healthy after {got['healthy_s']:.1f} s, "
                    f"{got['rss_mib']:.0f} MiB in {got['processes']:.0f} processes",
                    flush=True,
                )
    median = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0]}
        for name, found in runs.items()
    }
    print(
        json.dumps(
            {
                "bench": "mlflow_server",
                "rounds": args.rounds,
                **{name: {k: round(v, 2) for k, v in m.items()} for name, m in median.items()},
                "memory_ratio": round(
                    median["with_jobs"]["rss_mib"] / median["without_jobs"]["rss_mib"], 2
                ),
                "healthy_ratio": round(
                    median["with_jobs"]["healthy_s"] / median["without_jobs"]["healthy_s"], 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
