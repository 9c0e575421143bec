"""Router benchmark: the router against a bare FastAPI endpoint and ``mlflow models serve``.

``python bench/router.py [--duration S] [--load auto|wrk|python]`` (default 10 s per server).
In one run, on loopback:

1. trains a LogisticRegression on scikit-learn's breast-cancer data (30 numeric columns) and
   registers it twice (v1, v2: another ``C``) in a temporary SQLite MLflow registry;
2. serves version 1 with (a) a bare FastAPI endpoint calling ``model.predict`` on numpy
   (``bench/router_bare.py``); (b) ``mlflow models serve --env-manager local``; (c) the router
   with a 90/10 split between v1 and v2 from a traffic plan in a SQLite store, signature
   validation, prediction logging (every request, with its features) and metrics on; (d) the
   same router with micro-batching (``--batch-max-size 64``) at 64 connections. Every server
   has one worker process; (a) and (c) run side by side and are measured in three alternating
   rounds (each keeps its median round), so the ratio compares them in the same conditions on
   a shared machine;
3. drives each with ``wrk`` when it is installed (else ``bench/router_client.py``, several
   processes of raw-asyncio keep-alive connections), a 1-row ``dataframe_split`` payload,
   16 connections (64 for (d)), after a short warm-up;
4. prints a table, then, last, one JSON line with ``bare_rps``, ``mlflow_rps``, ``router_rps``,
   ``router_batched_rps``, the p50/p99 latencies and the ratios ``router_over_bare`` and
   ``router_over_mlflow``.

Every reply must be a 200 (the non-200 count is in the table and the JSON); the router's and
mlflow's predictions for the payload are checked to be equal before the load starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = "bench"
ROUNDS = 3  # bare and router alternate, this many rounds each
ORDER = ("bare", "mlflow", "router", "router_batched")
LOG_SAMPLE_RATE = 1.0  # every request is logged with its features (ROLLOUT_LOG_SAMPLE_RATE)
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read("*a")
"""


@dataclass
class Result:
    name: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.update(extra or {})
    return env


def setup(work: Path) -> tuple[dict[str, str], bytes, Path]:
    """Register two versions; write the 90/10 plan. Returns env, the payload, v1's directory."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from contract.plans import TrafficPlan
    from contract.sql.engine import open_engine
    from contract.sql.plans import SqlPlanStore

    registry_uri = f"sqlite:///{work / 'mlflow.db'}"
    store_url = f"sqlite:///{work / 'rollout.db'}"
    mlflow.set_tracking_uri(registry_uri)
    mlflow.set_registry_uri(registry_uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(work / "art").as_uri())
    data = load_breast_cancer(as_frame=True)
    X: pd.DataFrame = data.data
    y = data.target
    dirs = []
    for c in (1.0, 0.05):
        model = LogisticRegression(C=c, max_iter=5000).fit(X.to_numpy(), y)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X.to_numpy())),
                registered_model_name=MODEL,
                pip_requirements=["scikit-learn"],
            )
        dirs.append(info.model_uri)
    local = Path(mlflow.artifacts.download_artifacts(dirs[0], dst_path=str(work / "v1")))
    SqlPlanStore(open_engine(store_url)).put(
        TrafficPlan("prod", MODEL, "1", "2", 10, rollout_id="bench-rollout")
    )
    row = X.iloc[:1]
    payload = json.dumps(
        {"dataframe_split": {"columns": list(row.columns), "data": row.to_numpy().tolist()}}
    ).encode()
    env = {
        "MLFLOW_TRACKING_URI": registry_uri,
        "ROLLOUT_REGISTRY_URI": registry_uri,
        "ROLLOUT_STORE_URL": store_url,
        "ROLLOUT_HOME": str(work / "home"),
        "ROLLOUT_ENVIRONMENT": "prod",
        "ROLLOUT_LOG_SAMPLE_RATE": str(LOG_SAMPLE_RATE),
        "ROLLOUT_AUDIT_KEY": secrets.token_hex(32),  # a server store's manager needs one
    }
    return env, payload, local


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=child_env(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and every process it started (its session), so none competes later."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def post(port: int, payload: bytes, timeout: float = 5.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_serving(port: int, payload: bytes, process: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}); see {log}:\n{log.read_text()}")
        try:
            status, body = post(port, payload, timeout=2)
            if status == 200:
                return body["predictions"]
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on {port} did not serve within 120 s; see {log}")


def median(results: list[Result]) -> Result:
    """The round with the median throughput, its counts summed over all rounds."""
    ranked = sorted(results, key=lambda r: r.rps)
    middle = ranked[len(ranked) // 2]
    return Result(
        middle.name,
        middle.connections,
        middle.rps,
        middle.p50_ms,
        middle.p99_ms,
        sum(r.requests for r in results),
        sum(r.errors for r in results),
    )


def load(name: str, port: int, body_file: Path, connections: int, duration: float) -> Result:
    if use_wrk():
        return load_wrk(name, port, body_file, connections, duration)
    return load_python(name, port, body_file, connections, duration)


LOAD_TOOL = "auto"  # --load: auto (wrk when installed), wrk, python


def use_wrk() -> bool:
    return LOAD_TOOL == "wrk" or (LOAD_TOOL == "auto" and shutil.which("wrk") is not None)


def load_wrk(name: str, port: int, body_file: Path, connections: int, duration: float) -> Result:
    script = body_file.with_suffix(".lua")
    script.write_text(LUA.format(body=body_file))
    url = f"http://127.0.0.1:{port}/invocations"
    base = ["wrk", "-t1", f"-c{connections}", "-s", str(script), "--latency", url]
    subprocess.run([*base[:3], "-d1s", *base[3:]], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base[:3], f"-d{max(1, round(duration))}s", *base[3:]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields: dict[str, str] = {}
    errors = 0
    requests = 0
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            fields["rps"] = parts[1]
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            fields[parts[0]] = parts[1]
        elif "Non-2xx" in line:
            errors += int(parts[-1])
        elif "requests in" in line:
            requests = int(parts[0])
        elif line.strip().startswith("Socket errors"):
            errors += sum(int(p.rstrip(",")) for p in parts if p.rstrip(",").isdigit())
    return Result(
        name,
        connections,
        float(fields["rps"]),
        _ms(fields["50%"]),
        _ms(fields["99%"]),
        requests,
        errors,
    )


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def load_python(name: str, port: int, body_file: Path, connections: int, duration: float) -> Result:
    clients = 2
    per = max(1, connections // clients)
    client = str(HERE / "router_client.py")

    def run(seconds: float) -> list[dict[str, Any]]:
        cmd = [sys.executable, client, "--port", str(port), "--body-file", str(body_file)]
        cmd += ["--connections", str(per), "--duration", str(seconds)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(clients)]
        return [json.loads(p.communicate()[0]) for p in procs]

    run(1.0)  # warm-up
    parts = run(duration)
    requests = sum(p["requests"] for p in parts)
    seconds = max(p["seconds"] for p in parts)
    latencies = sorted(x for p in parts for x in p["latencies_ms"])

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    errors = sum(p["errors"] for p in parts)
    return Result(
        name, per * clients, requests / seconds, quantile(0.5), quantile(0.99), requests, errors
    )


def bench(duration: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="router-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env, payload, model_dir = setup(work)
        body_file = work / "payload.json"
        body_file.write_bytes(payload)
        results: dict[str, Result] = {}
        predictions: dict[str, Any] = {}
        python = sys.executable
        # mlflow first: bare and router then run back to back, in the same conditions.
        servers = [
            (
                "mlflow",
                [
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    f"models:/{MODEL}/1",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-w",
                    "1",
                ],
                16,
            ),
            ("bare", [python, str(HERE / "router_bare.py"), "--model-dir", str(model_dir)], 16),
            ("router", [python, "-m", "router", "--log-level", "warning"], 16),
            (
                "router_batched",
                [python, "-m", "router", "--log-level", "warning", "--batch-max-size", "64"],
                64,
            ),
        ]
        commands = {name: (cmd, connections) for name, cmd, connections in servers}

        def launch(name: str) -> tuple[subprocess.Popen[bytes], int]:
            cmd, _ = commands[name]
            port = free_port()
            log = work / f"{name}.log"
            process = start([*cmd, "-p" if name == "mlflow" else "--port", str(port)], env, log)
            processes.append(process)
            predictions[name] = wait_serving(port, payload, process, log)
            return process, port

        process, port = launch("mlflow")
        results["mlflow"] = load("mlflow", port, body_file, 16, duration)
        stop(process)
        # bare and router are both up and measured in alternating rounds, so a neighbour's
        # burst of load on a shared machine hits both alike; each keeps its median round.
        pair = {name: launch(name) for name in ("bare", "router")}
        rounds: dict[str, list[Result]] = {"bare": [], "router": []}
        for _ in range(ROUNDS):
            for name, (_, port) in pair.items():
                rounds[name].append(load(name, port, body_file, 16, duration / ROUNDS))
        for name, (process, _) in pair.items():
            results[name] = median(rounds[name])
            stop(process)
        process, port = launch("router_batched")
        results["router_batched"] = load("router_batched", port, body_file, 64, duration)
        stop(process)
        if predictions["router"] != predictions["mlflow"]:
            print(f"WARNING: router {predictions['router']} != mlflow {predictions['mlflow']}")
        return report(results, duration)
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, Result], duration: float) -> dict[str, Any]:
    tool = "wrk" if use_wrk() else "python client"
    print(f"\n{duration:g} s per server, 1-row payload, load by {tool}, one worker each\n")
    print(f"{'server':<16}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-200':>9}")
    for r in sorted(results.values(), key=lambda r: list(ORDER).index(r.name)):
        print(
            f"{r.name:<16}{r.connections:>6}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.errors:>9}"
        )
    bare, mlflow, router = results["bare"], results["mlflow"], results["router"]
    batched = results["router_batched"]
    summary = {
        "bare_rps": round(bare.rps, 1),
        "mlflow_rps": round(mlflow.rps, 1),
        "router_rps": round(router.rps, 1),
        "router_batched_rps": round(batched.rps, 1),
        "bare_p50_ms": round(bare.p50_ms, 2),
        "mlflow_p50_ms": round(mlflow.p50_ms, 2),
        "router_p50_ms": round(router.p50_ms, 2),
        "router_batched_p50_ms": round(batched.p50_ms, 2),
        "bare_p99_ms": round(bare.p99_ms, 2),
        "mlflow_p99_ms": round(mlflow.p99_ms, 2),
        "router_p99_ms": round(router.p99_ms, 2),
        "router_batched_p99_ms": round(batched.p99_ms, 2),
        "router_over_bare": round(router.rps / bare.rps, 3),
        "router_over_mlflow": round(router.rps / mlflow.rps, 2),
        "router_batched_over_bare": round(batched.rps / bare.rps, 3),
        "non_200": {r.name: r.errors for r in results.values()},
        "load_tool": tool,
        "log_sample_rate": LOG_SAMPLE_RATE,
        "duration_s": duration,
    }
    print()
    print(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per server")
    parser.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk when installed (auto), or the raw-asyncio Python client",
    )
    args = parser.parse_args()
    global LOAD_TOOL
    LOAD_TOOL = args.load
    bench(args.duration)


if __name__ == "__main__":
    main()
