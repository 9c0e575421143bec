"""Rollback benchmark: how soon a release that fails its watch is off every router.

``python bench/rollback.py [--routers 3] [--rounds 5]``

In one run, on loopback, on the embedded default (SQLite registry and store):

1. registers v1 (a LogisticRegression on scikit-learn's breast-cancer data) and v2, a pyfunc
   that answers like a model until a flag file exists and then raises; releases v1 in ``prod``;
2. starts ``--routers`` router processes of ``prod`` (their defaults: the plan read every
   0.5 s);
3. each round: rolls v2 out (one 100% step, SLO ``error_rate`` at most 5%, ``watch: 10m``),
   sending requests round-robin through the routers and ticking the manager until v2 is
   promoted and watched; creates the flag, so v2 fails every request (the routers' failover
   answers with v1); keeps serving and ticking until the watch fails and the manager has
   returned the plan and the alias to v1; then asks every router, concurrently, every 5 ms,
   until each serves v1 as the baseline.

Prints each round, then last one JSON line: per round the seconds from the decision (the commit
of the rollback) to the last router serving v1 alone, their median and maximum, the requests of
v2 the watch judged before it failed, and the non-200 replies (the failover should leave none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

MODEL = "bench-rollback"
FLAKY = """
from pathlib import Path

import mlflow


class Flaky(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if Path({flag!r}).exists():
            raise RuntimeError("failing once the flag file exists")
        return [0] * len(model_input)


mlflow.models.set_model(Flaky())
"""
SPEC = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 20}]}},
    "analysis": {"gates": "none", "slo": {"error_rate": {"max": 0.05}}},
    "watch": "10m",
}


def register(work: Path, registry_uri: str, flag: Path) -> tuple[str, str, dict[str, Any]]:
    """v1 (scikit-learn) and v2 (flaky); returns their versions and a 1-row payload."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(registry_uri)
    mlflow.set_registry_uri(registry_uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(work / "art").as_uri())
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    model = LogisticRegression(max_iter=5000).fit(X.to_numpy(), y)
    signature = infer_signature(X, model.predict(X.to_numpy()))
    with mlflow.start_run(experiment_id=experiment):
        v1 = mlflow.sklearn.log_model(
            model, name="model", signature=signature, registered_model_name=MODEL
        )
    code = work / "flaky.py"
    code.write_text(FLAKY.format(flag=str(flag)))
    with mlflow.start_run(experiment_id=experiment):
        v2 = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            signature=signature,
            registered_model_name=MODEL,
            pip_requirements=["mlflow"],
        )
    row = X.iloc[:1]
    payload = {"dataframe_split": {"columns": list(row.columns), "data": row.to_numpy().tolist()}}
    return str(v1.registered_model_version), str(v2.registered_model_version), payload


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--routers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import httpx

    from rollout.manager import Manager
    from rollout.settings import Settings
    from rollout.spec import load_spec
    from rollout.up import ProcessSpec, Supervisor, free_port

    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    registry_uri = f"sqlite:///{work / 'mlflow.db'}"
    # prod requires an approval by default; this benchmark's v2 is promoted without one
    (work / "home").mkdir()
    (work / "home" / "environments.yaml").write_text(
        "environments: [dev, staging, {name: prod, approval: {required: false}}]\n"
    )
    settings = Settings.resolve(
        home=work / "home", registry_uri=registry_uri, store_url=f"sqlite:///{work / 'store.db'}"
    )
    flag = work / "fail-now"
    v1, v2, payload = register(work, registry_uri, flag)
    manager = Manager(settings)
    manager.start(MODEL, v1, "prod", actor="alice")
    supervisor = Supervisor(settings, log_dir=work / "logs")
    urls = []
    for _ in range(args.routers):
        port = free_port()
        argv = [sys.executable, "-m", "router", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--environment", "prod", "--log-level", "warning"]
        supervisor.start(
            ProcessSpec(
                role="router", argv=argv, health_url=f"http://127.0.0.1:{port}/healthz", env={}
            ),
            timeout_s=120,
        )
        urls.append(f"http://127.0.0.1:{port}")
    clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
    path = f"/v1/models/{MODEL}/invocations"
    served = [0]
    non_200 = [0]

    def serve_then_tick() -> str:
        reply = clients[served[0] % len(clients)].post(path, json=payload)
        served[0] += 1
        non_200[0] += reply.status_code != 200
        manager.tick()
        return manager.rollout(rollout_id).state

    def until(state_is: Any, what: str, limit_s: float = 300.0) -> str:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            state = serve_then_tick()
            if state_is(state):
                return state
        raise SystemExit(f"timed out waiting for {what}")

    def first_v1_alone(client: httpx.Client, found: list[float]) -> None:
        while True:
            reply = client.post(path, json=payload)
            seen = (reply.headers.get("x-model-version"), reply.headers.get("x-arm"))
            if seen == (v1, "baseline"):
                found.append(time.monotonic())
                return
            time.sleep(0.005)

    rounds: list[dict[str, Any]] = []
    try:
        for client in clients:  # every router has loaded v1
            for _ in range(600):
                if client.get("/readyz").status_code == 200:
                    break
                time.sleep(0.1)
        for number in range(1, args.rounds + 1):
            flag.unlink(missing_ok=True)
            rollout_id = manager.start(MODEL, v2, "prod", load_spec(SPEC), actor="alice")
            state = until(lambda s: s not in ("pending", "verifying", "progressing"), "the watch")
            if state != "watching":
                raise SystemExit(f"round {number}: {manager.rollout(rollout_id).reason}")
            flag.touch()
            state = until(lambda s: s != "watching", "the watch to fail")
            decided = time.monotonic()
            record = manager.rollout(rollout_id)
            if state != "rolled_back":
                raise SystemExit(f"round {number}: {record.reason}")
            found: list[float] = []
            threads = [
                threading.Thread(target=first_v1_alone, args=(client, found)) for client in clients
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            if len(found) != len(clients):
                raise SystemExit(f"round {number}: not every router serves v{v1} within 30 s")
            latest = manager.history(MODEL, "prod")[0]
            final = (latest.evidence or {}).get("final") or {}
            judged = final.get("n_canary")
            seconds = max(found) - decided
            rounds.append({"seconds_to_all_routers": round(seconds, 3), "judged_requests": judged})
            print(
                f"round {number}: rolled back on {judged} requests of v{v2}; every router "
                f"served v{v1} alone {seconds:.3f} s after the decision",
                file=sys.stderr,
            )
    finally:
        for client in clients:
            client.close()
        supervisor.stop()
        manager.close()
    delays = [r["seconds_to_all_routers"] for r in rounds]
    print(
        json.dumps(
            {
                "routers": args.routers,
                "rounds": rounds,
                "median_s_to_all_routers": round(statistics.median(delays), 3),
                "max_s_to_all_routers": round(max(delays), 3),
                "non_200": non_200[0],
                "requests": served[0],
                "plan_poll_s": 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
