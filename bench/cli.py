"""CLI benchmark: how long ``rollout`` takes to answer, beside ``mlflow --help``.

``python bench/cli.py [--runs 10]``

1. prepares an embedded data directory in a temporary directory: the demo's model versions
   registered with :func:`rollout.demo.models.register_versions` (as ``tests/conftest.py``
   does), an initial release of v1 in ``prod`` and a canary of v2 at 10% (one step of 1,000
   requests, so the rollout stays active while it is measured);
2. times, as real subprocesses of this checkout's console scripts, ``rollout --help``,
   ``rollout status MODEL --env prod`` (on that active canary) and, for reference, the peer
   ``mlflow --help`` (what users run today): one unmeasured warm-up, then ``runs`` each,
   interleaved so a neighbour's burst of load on a shared machine hits all three alike;
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

from rollout.demo.models import load_data, register_versions  # noqa: E402
from rollout.manager import Manager  # noqa: E402
from rollout.registry import MlflowRegistry  # noqa: E402
from rollout.settings import Settings  # noqa: E402
from rollout.spec import load_spec  # noqa: E402

MODEL = "bc"
FLOORS_S = {"rollout_help": 1.0, "rollout_status": 2.0}
CANARY = {"strategy": {"canary": {"steps": [{"weight": 10, "min_requests": 1000}]}}}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)$")


def prepare(home: Path) -> dict[str, str]:
    """A data directory with an active canary of ``MODEL`` in prod; the child environment."""
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
    return env


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
        env = prepare(Path(tmp) / "home")
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
        print("rollout status under -X importtime ...", file=sys.stderr, flush=True)
        imports = imports_by_package(
            [sys.executable, "-X", "importtime", "-m", "rollout", "status", MODEL, "--env", "prod"],
            env,
        )
    summary: dict[str, object] = {"runs": args.runs}
    print(f"\n{args.runs} runs each, subprocesses, embedded store with an active canary\n")
    print(f"{'command':<30}{'median s':>10}{'p90 s':>10}{'floor s':>10}  holds")
    for name, argv in commands.items():
        median, high = statistics.median(seconds[name]), p90(seconds[name])
        floor = FLOORS_S.get(name)
        holds = None if floor is None else high < floor
        label = " ".join([Path(argv[0]).name, *argv[1:]])
        print(
            f"{label:<30}{median:>10.2f}{high:>10.2f}"
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
