"""Soak: the whole stack on loopback under steady traffic while a canary runs to its end.

``python bench/soak.py [--seconds 60] [--store-url URL] [--concurrency 4] [--mlflow-server]``

In one run, as processes on loopback (:class:`rollout.up.Supervisor`, as ``rollout up`` does):

1. trains and registers the demo's v1 (baseline) and v2 (better) of ``soak`` in a SQLite MLflow
   registry under a fresh directory; with ``--mlflow-server`` an ``mlflow server`` serves that
   registry and every other process talks HTTP to it;
2. starts **two routers** of ``prod``, the **manager** loop and the **API** (``rollout api``,
   with a deployer's and an approver's token in ``ROLLOUT_API_TOKENS``); the store is a SQLite
   file unless ``--store-url`` names PostgreSQL;
3. releases v1 through the API, waits until both routers serve it, then sends traffic
   round-robin through both routers (``--concurrency`` clients, a sticky key per user) and
   starts the canary of v2 through the API: steps 20% and 50% (``min_requests`` sized to the
   run), the SLO at 100%, and an advisory quality gate fed by the labels; an approval asked
   for is given by the approver's token (never the deployer's);
4. a **label writer** posts each answered request's true label to ``/v1/feedback`` of the
   router that answered, a little later, in batches, with ``Authorization: Bearer
   $ROLLOUT_LABEL_TOKEN`` (a fresh token when unset; the routers accept its sha256 and share
   one request id key);
5. after ``--seconds`` (and once the canary has ended, at most ``--grace`` seconds more) it
   stops the traffic, posts the last labels, stops the routers (which flush their prediction
   logs) and counts what the store holds.

Prints progress to stderr, then one JSON line: ``sent`` (invocations answered, any status),
``failed`` (transport errors and non-200 replies), ``p99_ms`` (client-side latency of the
invocations), ``lost_records`` (answered request ids with no prediction record in the store:
0 while the store is up), ``labels_sent`` (202-accepted labels), ``lost_labels``, and the
rollout's ``outcome`` (``succeeded``, ``rolled_back``, ... or the state it was still in).
Exit status 0 only when nothing failed, nothing was lost and the canary ended.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

ENVIRONMENT = "prod"
TERMINAL = ("succeeded", "rolled_back", "aborted")


def canary_spec(seconds: float) -> dict[str, Any]:
    """Two canary steps sized so the rollout can end within ``seconds`` on a busy machine
    (about 40 requests a second through two routers), then the 100% step under the SLO."""
    per_step = max(30, int(seconds * 4))
    return {
        "strategy": {
            "canary": {
                "steps": [
                    {"weight": 20, "min_requests": per_step},
                    {"weight": 50, "min_requests": per_step},
                    {"weight": 100, "min_requests": per_step},
                ],
                "sticky_key": "header:x-rollout-key",
            }
        },
        "analysis": {
            "gates": [
                {"quality": {"metric": "accuracy", "max_decrease": 0.05, "advisory": True}},
            ],
            "slo": {"error_rate": {"max": 0.2}},
            "on_inconclusive": "extend",
        },
    }


def say(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Traffic:
    """What the clients and the label writer did (one asyncio loop, so no locks)."""

    sent: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # x-request-id of every reply
    by_arm: Counter[str] = field(default_factory=Counter)
    labels_sent: int = 0
    labels_refused: int = 0
    labelled: set[str] = field(default_factory=set)
    pending: list[tuple[float, int, str, int]] = field(default_factory=list)

    def p99_ms(self) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Driver:
    """Invocations round-robin over the routers and delayed labels, on a background thread."""

    def __init__(
        self,
        router_urls: list[str],
        model: str,
        rows: list[list[float]],
        columns: list[str],
        labels: list[int],
        *,
        concurrency: int,
        label_token: str | None,
        label_delay_s: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.router_urls = router_urls
        self.model = model
        self.rows, self.columns, self.labels = rows, columns, labels
        self.concurrency = concurrency
        self.label_headers = {"Authorization": f"Bearer {label_token}"} if label_token else {}
        self.label_delay_s = label_delay_s
        self.random = random.Random(seed)
        self.traffic = Traffic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.concurrency + 4)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            clients = [self._client(client, n) for n in range(self.concurrency)]
            await asyncio.gather(*clients, self._labeller(client))
            await self._send_labels(client, flush=True)

    async def _client(self, client: Any, number: int) -> None:
        import httpx

        path = f"/v1/models/{self.model}/invocations"
        turn = number
        while not self._stop.is_set():
            router = turn % len(self.router_urls)
            turn += 1
            index = self.random.randrange(len(self.rows))
            user = self.random.randrange(5_000)
            body = {"dataframe_split": {"columns": self.columns, "data": [self.rows[index]]}}
            began = time.perf_counter()
            try:
                reply = await client.post(
                    self.router_urls[router] + path,
                    json=body,
                    headers={"x-rollout-key": f"user-{user}"},
                )
            except httpx.HTTPError as exc:
                self.traffic.failed += 1
                self.traffic.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            self.traffic.latencies_ms.append((time.perf_counter() - began) * 1000)
            self.traffic.sent += 1
            request_id = reply.headers.get("x-request-id")
            if request_id:
                self.traffic.answered.add(request_id)
            if reply.status_code != 200:
                self.traffic.failed += 1
                self.traffic.errors[f"http {reply.status_code}"] += 1
                continue
            self.traffic.by_arm[reply.headers.get("x-arm", "?")] += 1
            if request_id:
                due = time.monotonic() + self.label_delay_s
                self.traffic.pending.append((due, router, request_id, self.labels[index]))

    async def _labeller(self, client: Any) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.25)
            await self._send_labels(client)

    async def _send_labels(self, client: Any, flush: bool = False) -> None:
        import httpx

        now = time.monotonic()
        due = [item for item in self.traffic.pending if flush or item[0] <= now]
        if not due:
            return
        self.traffic.pending = [item for item in self.traffic.pending if item not in due]
        for router, url in enumerate(self.router_urls):
            batch = [(rid, label) for _, r, rid, label in due if r == router]
            for start in range(0, len(batch), 100):
                chunk = batch[start : start + 100]
                body = [{"request_id": rid, "label": label} for rid, label in chunk]
                try:
                    reply = await client.post(
                        f"{url}/v1/feedback", json=body, headers=self.label_headers
                    )
                except httpx.HTTPError as exc:
                    self.traffic.labels_refused += len(chunk)
                    self.traffic.errors[f"feedback {type(exc).__name__}"] += 1
                    continue
                if reply.status_code == 202:
                    self.traffic.labels_sent += len(chunk)
                    self.traffic.labelled.update(rid for rid, _ in chunk)
                else:
                    self.traffic.labels_refused += len(chunk)
                    self.traffic.errors[f"feedback http {reply.status_code}"] += 1


def router_env(label_token: str, request_id_key: str) -> dict[str, str]:
    """What both routers need: the label writer's token (its sha256) and one shared key for the
    request ids they sign, so a label reaching either router is accepted."""
    return {
        "ROLLOUT_LABEL_TOKEN_SHA256": hashlib.sha256(label_token.encode()).hexdigest(),
        "ROLLOUT_REQUEST_ID_KEY": request_id_key,
    }


def _token_entry(identity: str, role: str, token: str) -> str:
    return f"{identity}:{role}={hashlib.sha256(token.encode()).hexdigest()}"


def _stored_ids(store_url: str, table_name: str, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` request ids the store's ``table_name`` holds."""
    from sqlalchemy import select

    from contract.sql import schema
    from contract.sql.engine import open_engine

    table = getattr(schema, table_name)
    engine = open_engine(store_url)
    found: set[str] = set()
    try:
        ids = sorted(wanted)
        with engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(table.c.request_id).where(table.c.request_id.in_(chunk))
                found.update(str(row[0]) for row in conn.execute(query))
    finally:
        engine.dispose()
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from rollout.demo.models import load_data, register_versions
    from rollout.registry import MlflowRegistry
    from rollout.settings import Settings
    from rollout.up import MLFLOW_SERVER_ONLY_ENV, ProcessSpec, Supervisor, free_port, venv_path_env

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    store_url = args.store_url or f"sqlite:///{work / 'store.db'}"
    data = load_data()
    if args.registry_uri:  # an existing registry with both versions (the tests' demo registry)
        settings = Settings.resolve(
            home=work / "home", registry_uri=args.registry_uri, store_url=store_url
        )
        if args.artifact_root:
            settings = replace(settings, artifact_root=args.artifact_root)
        model, baseline, candidate = args.model, args.baseline, args.candidate
    else:
        settings = Settings.resolve(
            home=work / "home", registry_uri=f"sqlite:///{work / 'home' / 'mlflow.db'}",
            store_url=store_url,
        )  # fmt: skip
        settings.ensure_home()
        say(f"training and registering v1, v2 of {args.model!r} under {work}", started)
        registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
        versions = register_versions(registry, args.model, data)
        model, baseline, candidate = args.model, versions["baseline"], versions["better"]
    settings.ensure_home()

    supervisor = Supervisor(settings, log_dir=work / "logs")
    if args.mlflow_server:
        port = free_port()
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", settings.registry_uri,
            "--artifacts-destination", str(settings.home / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        supervisor.start(
            ProcessSpec(
                "registry", argv, f"http://127.0.0.1:{port}/health", dict(MLFLOW_SERVER_ONLY_ENV)
            ),
            timeout_s=120,
        )
        settings = Settings(
            home=settings.home, registry_uri=f"http://127.0.0.1:{port}",
            store_url=store_url, artifact_root=settings.artifact_root,
        )  # fmt: skip
        supervisor.settings = settings
    deployer, approver = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    label_token = os.environ.get("ROLLOUT_LABEL_TOKEN") or secrets.token_urlsafe(32)
    request_id_key = secrets.token_hex(32)
    # the manager and the API append to one audit chain: on a PostgreSQL store they must be
    # given its key (a SQLite store's home makes one)
    os.environ.setdefault("ROLLOUT_AUDIT_KEY", secrets.token_hex(32))
    api_env = {
        "ROLLOUT_API_TOKENS": ",".join(
            (
                _token_entry("soak-deployer", "deployer", deployer),
                _token_entry("soak-approver", "approver", approver),
            )
        ),
        **venv_path_env(),
    }
    router_urls: list[str] = []
    try:
        for number in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "router", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--environment", ENVIRONMENT, "--log-level", "warning"]
            url = f"http://127.0.0.1:{port}"
            supervisor.start(
                ProcessSpec(
                    f"router-{number + 1}",
                    argv,
                    f"{url}/healthz",
                    env=router_env(label_token, request_id_key),
                ),
                timeout_s=120,
            )
            router_urls.append(url)
        supervisor.start(
            ProcessSpec(
                "manager", [sys.executable, "-m", "rollout", "manager", "--interval", "0.25"]
            )
        )
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        supervisor.start(
            ProcessSpec(
                "api",
                [sys.executable, "-m", "rollout", "api", "--port", str(api_port)],
                f"{api_url}/healthz",
                env=api_env,
            ),
            timeout_s=120,
        )
        say(f"2 routers, manager and API up; logs in {supervisor.log_dir}", started)
        api = httpx.Client(base_url=api_url, timeout=30.0)
        as_deployer = {"Authorization": f"Bearer {deployer}"}
        as_approver = {"Authorization": f"Bearer {approver}"}
        env_path = f"/v1/models/{model}/environments/{ENVIRONMENT}"

        def start(version: str, spec: dict[str, Any] | None) -> str:
            body = {"model": model, "candidate": version, "environment": ENVIRONMENT}
            reply = api.post("/v1/rollouts", json={**body, "spec": spec}, headers=as_deployer)
            if reply.status_code != 201:
                raise SystemExit(f"start of v{version}: {reply.status_code} {reply.text}")
            return str(reply.json()["id"])

        def state_of(rollout_id: str) -> str:
            reply = api.get(f"/v1/rollouts/{rollout_id}/report", headers=as_deployer)
            reply.raise_for_status()
            return str(reply.json()["rollout"]["state"])

        def serving_everywhere(version: str, timeout_s: float = 120.0) -> None:
            deadline = time.monotonic() + timeout_s
            for url in router_urls:
                while True:
                    models = httpx.get(f"{url}/v1/models", timeout=10).json()["models"]
                    ready = httpx.get(f"{url}/readyz", timeout=10).status_code == 200
                    if ready and any(m.get("baseline_version") == version for m in models):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{url} does not serve v{version}: {models}")
                    time.sleep(0.2)

        initial = start(baseline, None)
        deadline = time.monotonic() + 120
        while state_of(initial) not in TERMINAL:
            if time.monotonic() > deadline:
                raise SystemExit(f"the initial release is still {state_of(initial)}")
            time.sleep(0.2)
        serving_everywhere(baseline)
        say(f"v{baseline} released and served by both routers", started)

        driver = Driver(
            router_urls,
            model,
            data.serve_X.to_numpy().tolist(),
            list(data.serve_X.columns),
            [int(v) for v in data.serve_y],
            concurrency=args.concurrency,
            label_token=label_token,
        )
        traffic_started = time.monotonic()
        driver.start()
        rollout_id = start(candidate, canary_spec(args.seconds))
        say(f"canary {rollout_id} of v{candidate} started", started)
        state, approved = "pending", False
        end = traffic_started + args.seconds
        while True:
            time.sleep(1.0)
            state = state_of(rollout_id)
            if state == "awaiting_approval" and not approved:
                reply = api.post(f"{env_path}/approve", json={}, headers=as_approver)
                approved = reply.status_code == 200
                say(f"approved by soak-approver: {reply.status_code}", started)
            t = driver.traffic
            say(
                f"{state:<18} sent {t.sent} failed {t.failed} labels {t.labels_sent} "
                f"arms {dict(t.by_arm)}",
                started,
            )
            now = time.monotonic()
            if now >= end and (state in TERMINAL or now >= end + args.grace):
                break
            exited = supervisor.first_exited()
            if exited is not None:
                raise SystemExit(f"{exited[0].role} exited with code {exited[1]}")
        driver.stop()
        elapsed = time.monotonic() - traffic_started
        api.close()
    finally:
        supervisor.stop(timeout_s=60)  # routers flush their prediction logs on SIGTERM
    traffic = driver.traffic
    stored = _stored_ids(store_url, "predictions", traffic.answered)
    labels_stored = _stored_ids(store_url, "feedback", traffic.labelled)
    result = {
        "seconds": round(elapsed, 1),
        "routers": len(router_urls),
        "store": store_url.split(":", 1)[0],
        "model": model,
        "registry": "mlflow server" if args.mlflow_server else "embedded sqlite",
        "sent": traffic.sent,
        "failed": traffic.failed,
        "errors": dict(traffic.errors),
        "rps": round(traffic.sent / max(elapsed, 1e-9), 1),
        "p99_ms": round(traffic.p99_ms(), 1),
        "lost_records": len(traffic.answered - stored),
        "labels_sent": traffic.labels_sent,
        "labels_refused": traffic.labels_refused,
        "lost_labels": len(traffic.labelled - labels_stored),
        "by_arm": dict(traffic.by_arm),
        "outcome": state,
        "baseline": baseline,
        "candidate": candidate,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic for this long")
    parser.add_argument(
        "--grace", type=float, default=180.0, help="longest wait past --seconds for the canary"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--store-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--mlflow-server", action="store_true", help="registry over HTTP")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--registry-uri", help="use this registry's versions (no training)")
    parser.add_argument("--artifact-root", help="with --registry-uri: where its artifacts are")
    parser.add_argument("--model", default="soak", help="the registered model")
    parser.add_argument("--baseline", default="1", help="with --registry-uri: released first")
    parser.add_argument("--candidate", default="2", help="with --registry-uri: the canary")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result), flush=True)
    healthy = (
        result["failed"] == 0
        and result["lost_records"] == 0
        and result["lost_labels"] == 0
        and result["outcome"] in TERMINAL
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
