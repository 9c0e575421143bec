"""CLI benchmark: how long ``rollout`` takes to answer, beside ``mlflow --help``.

``python bench/cli.py [--runs 10]``

1. prepares an embedded data directory in a temporary directory: the demo's model versions
   registered with :func:`rollout.demo.models.register_versions` (as ``tests/conftest.py``
   does), an initial release of v1 in ``prod`` and a canary of v2 at 10% with the default
   spec's four gates (one step of 10,000 requests, so the rollout stays active while it is
   measured);
2. times, as real subprocesses of this checkout's console scripts, ``rollout --help``,
   ``rollout status MODEL --env prod`` (on that active canary, its step window empty) and, for
   reference, the peer ``mlflow --help`` (what users run today): one unmeasured warm-up, then
   ``runs`` each, interleaved so a neighbour's burst of load on a shared machine hits all three
   alike; then logs 900 baseline and 100 canary requests with labels into the step's window
   (through the routers' writer) and times ``rollout status`` again, now computing every gate
   on them (``rollout_status_window``);
3. runs ``rollout status`` once more under ``python -X importtime`` and sums the modules' own
   import times by top-level package, to show what the status path still loads;
4. prints a table, then, last, one JSON line with the median and p90 seconds of each command,
   whether the floors hold (``--help`` under 1 s, ``status`` under 2 s, judged on the p90) and
   the biggest imports of ``status``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contract.records import Feedback, PredictionRecord  # noqa: E402
from contract.sql.engine import open_engine  # noqa: E402
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink  # noqa: E402
from rollout.demo.models import load_data, register_versions  # noqa: E402
from rollout.manager import Manager  # noqa: E402
from rollout.registry import MlflowRegistry  # noqa: E402
from rollout.settings import Settings  # noqa: E402
from rollout.spec import DEFAULT_SPEC, load_spec  # noqa: E402

MODEL = "bc"
FLOORS_S = {"rollout_help": 1.0, "rollout_status": 2.0, "rollout_status_window": 2.0}
CANARY = {
    **DEFAULT_SPEC,
    "strategy": {"canary": {"steps": [{"weight": 10, "min_requests": 10_000}]}},
}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)$")


def prepare(home: Path) -> tuple[dict[str, str], str]:
    """A data directory with an active canary of ``MODEL`` in prod: the child environment and
    the rollout's id."""
    settings = Settings.resolve(home=home)
    settings.ensure_home()
    registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
    versions = register_versions(registry, MODEL, load_data())
    manager = Manager(settings, registry=registry)
    try:
        manager.start(MODEL, versions["baseline"], "prod", None, "bench")
        rollout_id = manager.start(MODEL, versions["better"], "prod", load_spec(CANARY), "bench")
        state = manager.rollout(rollout_id).state
    finally:
        manager.close()
    if state != "progressing":
        raise SystemExit(f"the canary {rollout_id} is {state}, expected progressing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    env |= settings.env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env, rollout_id


def fill_window(store_url: str, rollout_id: str, seed: int = 1) -> None:
    """900 baseline and 100 canary requests (1% errors, class outputs, labels) in the window,
    written as a router writes them."""
    rng = random.Random(seed)
    now = time.time()
    records, labels = [], []
    for i in range(1000):
        arm, version = ("canary", "2") if i % 10 == 0 else ("baseline", "1")
        failed = rng.random() < 0.01
        output = int(rng.random() < 0.6)
        request_id = f"bench-{i}"
        records.append(
            PredictionRecord(
                request_id=request_id,
                ts=now,
                environment="prod",
                model=MODEL,
                version=version,
                arm=arm,
                rollout_id=rollout_id,
                plan_generation=1,
                features=None,
                output=None if failed else f"[{output}]",
                latency_ms=rng.lognormvariate(1.5, 0.4),
                error="ModelError: boom" if failed else None,
                status_code=500 if failed else 200,
            )
        )
        if not failed:
            labels.append(Feedback(request_id, output if rng.random() < 0.9 else 1 - output, now))
    engine = open_engine(store_url)
    try:
        SqlPredictionSink(engine).write(records)
        SqlFeedbackSink(engine).add_feedback(labels)
    finally:
        engine.dispose()


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def imports_by_package(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds spent importing each top-level package's own modules (``-X importtime`` self
    times summed by package, so ``pandas`` counts pandas' modules wherever it was imported
    from, and the sum over packages is the whole import time), largest first."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        found = IMPORT_LINE.match(line)
        if found is not None:
            totals[found[2].split(".")[0]] += int(found[1]) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
        print("registering the demo versions, starting a canary ...", file=sys.stderr, flush=True)
        env, rollout_id = prepare(Path(tmp) / "home")
        commands = {
            "rollout_help": [str(bin_dir / "rollout"), "--help"],
            "rollout_status": [str(bin_dir / "rollout"), "status", MODEL, "--env", "prod"],
            "mlflow_help": [str(bin_dir / "mlflow"), "--help"],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for name, argv in commands.items():
            print(f"warm-up: {name}", file=sys.stderr, flush=True)
            timed(argv, env)
        for run in range(1, args.runs + 1):
            for name, argv in commands.items():
                seconds[name].append(timed(argv, env))
            shown = ", ".join(f"{name} {values[-1]:.2f} s" for name, values in seconds.items())
            print(f"run {run}/{args.runs}: {shown}", file=sys.stderr, flush=True)
        print("logging 1,000 requests into the step window ...", file=sys.stderr, flush=True)
        fill_window(env["ROLLOUT_STORE_URL"], rollout_id)
        commands["rollout_status_window"] = commands["rollout_status"]
        seconds["rollout_status_window"] = []
        timed(commands["rollout_status_window"], env)
        for run in range(1, args.runs + 1):
            seconds["rollout_status_window"].append(timed(commands["rollout_status"], env))
            print(
                f"run {run}/{args.runs}: rollout_status_window "
                f"{seconds['rollout_status_window'][-1]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
        print("rollout status under -X importtime ...", file=sys.stderr, flush=True)
        imports = imports_by_package(
            [sys.executable, "-X", "importtime", "-m", "rollout", "status", MODEL, "--env", "prod"],
            env,
        )
    summary: dict[str, object] = {"runs": args.runs}
    print(f"\n{args.runs} runs each, subprocesses, embedded store with an active canary\n")
    print(f"{'command':<44}{'median s':>10}{'p90 s':>10}{'floor s':>10}  holds")
    for name, argv in commands.items():
        median, high = statistics.median(seconds[name]), p90(seconds[name])
        floor = FLOORS_S.get(name)
        holds = None if floor is None else high < floor
        label = " ".join([Path(argv[0]).name, *argv[1:]])
        if name == "rollout_status_window":
            label += " (1,000 in the window)"
        print(
            f"{label:<44}{median:>10.2f}{high:>10.2f}"
            f"{'-' if floor is None else f'{floor:g}':>10}  {'-' if holds is None else holds}"
        )
        summary |= {f"{name}_median_s": round(median, 3), f"{name}_p90_s": round(high, 3)}
        if holds is not None:
            summary[f"{name}_under_{floor:g}s"] = holds
    top = dict(list(imports.items())[:8])
    total = sum(imports.values())
    print(f"\nrollout status: {total:.2f} s of imports, by top-level package (-X importtime)")
    for package, spent in top.items():
        print(f"  {package:<28}{spent:>8.2f} s")
    summary["status_import_total_s"] = round(total, 2)
    summary["status_imports_s"] = {package: round(spent, 2) for package, spent in top.items()}
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
