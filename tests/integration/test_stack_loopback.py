"""compose.yaml's layout as real processes on loopback, and a canary through it to promotion.

There is no Docker engine here, so the services run as processes, each started from what
``compose.yaml`` says: its ``command`` (with loopback hosts and free ports) and its
``environment`` (interpolated with fresh secrets from ``deploy/make_env.py`` and with service
addresses rewritten to loopback ones). The layout:

- a PostgreSQL store (a fresh database, :func:`conftest.fresh_postgres_database`) and a second
  fresh database for ``mlflow server``, which keeps its artifacts in a directory;
- the manager (it migrates the store), the API, two routers logging in as ``rollout_router``;
- a round-robin load balancer in this test (compose's ``lb`` is nginx, not installed here);
- Prometheus scraping both routers (required under ``CI=true``; skipped after the rest off CI
  when it is not installed).

The test registers two versions through the mlflow server, releases v1 through the API, starts a
canary of v2 with a smoke test (pinned through the balancer with the pin token), sends traffic
and labels through the balancer until the manager promotes v2, and asserts that Prometheus
scraped both routers and that both served requests.
"""

from __future__ import annotations

import itertools
import os
import re
import runpy
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import (
    MODEL,
    NO_APPROVAL_ENVIRONMENTS,
    PG_ADMIN_URL,
    DemoHome,
    fresh_postgres_database,
    serving,
    wait_until,
)
from contract.sql.engine import ROUTER_ROLE, open_engine
from rollout.demo.models import load_data
from rollout.registry import MlflowRegistry
from rollout.settings import Settings
from rollout.up import ProcessSpec, Supervisor, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")
HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
TERMINAL = ("succeeded", "rolled_back", "aborted")


@dataclass(frozen=True)
class Loopback:
    """Where each compose service runs on loopback, and the values of compose's ``${VAR}``."""

    secrets: dict[str, str]
    addresses: dict[str, str]  # compose's "service:port" → "127.0.0.1:port"
    databases: dict[str, str]  # compose's database name → the fresh database's
    owner: str  # the test server's owner login, for compose's POSTGRES_USER
    home: Path
    artifacts: Path

    def value(self, text: str) -> str:
        """``text`` from compose.yaml as it reads on loopback."""
        text = VARIABLE.sub(lambda m: self.secrets[m[1]], text)
        for service, address in self.addresses.items():
            text = text.replace(f"@{service}/", f"@{address}/").replace(
                f"//{service}", f"//{address}"
            )
        for name, fresh in self.databases.items():
            text = re.sub(rf"(@[\d.:]+)/{name}$", rf"\1/{fresh}", text)
        text = text.replace("postgresql://rollout:", f"postgresql://{self.owner}:")
        return text.replace("postgresql+psycopg://mlflow:", f"postgresql+psycopg://{self.owner}:")

    def environment(self, service: dict[str, Any]) -> dict[str, str]:
        env = {str(k): self.value(str(v)) for k, v in service.get("environment", {}).items()}
        if "ROLLOUT_HOME" in env:
            env["ROLLOUT_HOME"] = str(self.home)
        if "ROLLOUT_AUDIT_HEAD_FILE" in env:
            env["ROLLOUT_AUDIT_HEAD_FILE"] = str(self.home / "audit" / "head.jsonl")
        env.pop("ROLLOUT_MANAGER_METRICS_HOST", None)  # loopback: its default
        if "ROLLOUT_MANAGER_METRICS_PORT" in env:
            env["ROLLOUT_MANAGER_METRICS_PORT"] = str(free_port())
        return env

    def command(self, service: dict[str, Any], port: int) -> list[str]:
        argv = [str(a) for a in service["command"]]
        replace = {"--host": "127.0.0.1", "--port": str(port)}
        replace |= {"--artifacts-destination": str(self.artifacts)}
        replace |= {"--allowed-hosts": f"127.0.0.1:{port}"}
        for flag, value in replace.items():
            if flag in argv:
                argv[argv.index(flag) + 1] = value
        return argv


def round_robin(upstreams: list[str]) -> Starlette:
    """compose's ``lb``: each request, whatever its path, to the next router in turn."""
    turns = itertools.cycle(upstreams)
    clients: list[httpx.AsyncClient] = []

    async def forward(request: Request) -> Response:
        if not clients:  # made on the server's own event loop
            clients.append(httpx.AsyncClient(timeout=30))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        reply = await clients[0].request(
            request.method,
            next(turns) + request.url.path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
        out = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
        out.pop("content-encoding", None)
        return Response(reply.content, reply.status_code, headers=out)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def prometheus_spec(routers: list[str], work: Path) -> ProcessSpec | None:
    """Prometheus scraping both routers every second; None when it is not installed (a
    failure under ``CI=true``)."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is required under CI=true: run deploy/install-tools.sh")
        return None
    targets = [urlsplit(url).netloc for url in routers]
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "router", "static_configs": [{"targets": targets}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary, f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    return ProcessSpec("prometheus", argv, f"http://127.0.0.1:{port}/-/ready")


def copy_version(source: MlflowRegistry, target: MlflowRegistry, version: str) -> str:
    """``MODEL`` ``version`` of ``source`` registered in ``target`` over its HTTP API: its
    artifact uploaded into a run of its own, the version made from it and its digest recorded."""
    local = Path(
        source.client.get_model_version_download_uri(MODEL, version).removeprefix("file://")
    )
    experiment = target.ensure_experiment("stack-loopback")
    run = target.client.create_run(experiment)
    target.client.log_artifacts(run.info.run_id, str(local), "model")
    target.client.set_terminated(run.info.run_id)
    if not target.client.search_registered_models(f"name = '{MODEL}'"):
        target.client.create_registered_model(MODEL)
    made = target.client.create_model_version(
        MODEL, f"{run.info.artifact_uri}/model", run.info.run_id
    )
    target.record_digest(MODEL, str(made.version))
    assert target.record_digest(MODEL, str(made.version)) == source.record_digest(MODEL, version)
    return str(made.version)


def ensure_router_role() -> None:
    """The router's login, as deploy/postgres-init.sql makes it (the test server trusts
    loopback, so its password is not checked)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROUTER_ROLE}') "
            f"THEN CREATE ROLE {ROUTER_ROLE} LOGIN; END IF; END $$"
        )


@dataclass(frozen=True)
class Stack:
    api: httpx.Client  # as the admin of make_env.py's ROLLOUT_API_TOKENS
    lb: httpx.Client
    routers: list[str]
    prometheus: str | None
    secrets: dict[str, str]
    settings: Settings


@pytest.fixture
def stack(demo_home: DemoHome, tmp_path: Path) -> Iterator[Stack]:
    began = time.monotonic()  # the phases' times are printed (pytest shows them on a failure)
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    secrets: dict[str, str] = runpy.run_path(str(ROOT / "deploy/make_env.py"))["make_env"]()
    ensure_router_role()
    with ExitStack() as stack:
        store = stack.enter_context(fresh_postgres_database())
        registry_db = stack.enter_context(fresh_postgres_database())
        ports = {name: free_port() for name in ("registry", "api", "router-1", "router-2")}
        routers = [f"http://127.0.0.1:{ports[name]}" for name in ("router-1", "router-2")]
        lb = stack.enter_context(serving(round_robin(routers)))
        loopback = Loopback(
            secrets=secrets,
            addresses={
                "registry:5000": f"127.0.0.1:{ports['registry']}",
                "postgres:5432": str(urlsplit(store).netloc.rsplit("@", 1)[-1]),
                "lb:8080": str(lb.base_url.netloc.decode()),
            },
            databases={
                "rollout": store.rsplit("/", 1)[1],
                "mlflow": registry_db.rsplit("/", 1)[1],
            },
            owner=urlsplit(store).username or "postgres",
            home=tmp_path / "home",
            artifacts=tmp_path / "artifacts",
        )
        loopback.home.mkdir()
        (loopback.home / "environments.yaml").write_text(NO_APPROVAL_ENVIRONMENTS)
        settings = Settings.resolve(
            home=loopback.home,
            registry_uri=f"http://127.0.0.1:{ports['registry']}",
            store_url=loopback.value(compose["manager"]["environment"]["ROLLOUT_STORE_URL"]),
        )
        supervisor = Supervisor(settings, log_dir=tmp_path / "logs")
        stack.callback(_stop_and_show_logs, supervisor, tmp_path / "logs")

        def ours(name: str, port: int) -> ProcessSpec:
            argv = [sys.executable, "-m", "rollout", *loopback.command(compose[name], port)]
            url = f"http://127.0.0.1:{port}/healthz" if "--port" in argv else None
            return ProcessSpec(name, argv, url, env=loopback.environment(compose[name]))

        registry = compose["registry"]
        argv = [sys.executable, "-m", "mlflow", *loopback.command(registry, ports["registry"])]
        health = f"http://127.0.0.1:{ports['registry']}/health"
        env = loopback.environment(registry)
        # Started side by side (2 cores; the mlflow server's migrations mostly wait on
        # PostgreSQL), each awaited where compose's depends_on awaits it.
        start_all(supervisor, [ProcessSpec("registry", argv, health, env), ours("manager", 0)])
        wait_until(  # compose: the API and the routers wait for the manager's migration
            lambda: _migrated(settings.store_url), "the manager to migrate the store", 120
        )
        print(f"[{time.monotonic() - began:5.1f} s] registry healthy, store migrated")
        prometheus = prometheus_spec(routers, tmp_path)
        start_all(
            supervisor,
            [ours(name, ports[name]) for name in ("api", "router-1", "router-2")],
            [prometheus] if prometheus is not None else [],
            meanwhile=lambda: copy_versions(demo_home, settings.registry_uri),
        )
        print(f"[{time.monotonic() - began:5.1f} s] v1, v2 registered; API, routers healthy")
        api = stack.enter_context(
            httpx.Client(
                base_url=f"http://127.0.0.1:{ports['api']}",
                headers={"authorization": f"Bearer {secrets['ROLLOUT_ADMIN_TOKEN']}"},
                timeout=30,
            )
        )
        yield Stack(
            api=api,
            lb=lb,
            routers=routers,
            prometheus=prometheus.health_url.rsplit("/-/", 1)[0] if prometheus else None,
            secrets=secrets,
            settings=settings,
        )


def start_all(
    supervisor: Supervisor,
    *groups: list[ProcessSpec],
    meanwhile: Callable[[], object] = lambda: None,
    timeout_s: float = 120.0,
) -> None:
    """Start every process of ``groups`` at once, call ``meanwhile``, then wait until each
    answers its health check (failing at once when one exits)."""
    specs = [spec for group in groups for spec in group]
    for spec in specs:
        supervisor.start(replace(spec, health_url=None))
    meanwhile()

    def healthy() -> list[str]:
        exited = supervisor.first_exited()
        assert exited is None, f"{exited[0].role} exited with code {exited[1]}"
        waiting = []
        for spec in specs:
            try:
                ok = spec.health_url is None or httpx.get(spec.health_url, timeout=2).is_success
            except httpx.HTTPError:
                ok = False
            if not ok:
                waiting.append(spec.role)
        return waiting

    wait_until(healthy, "every process to be healthy", timeout_s, until=lambda w: not w,
               interval_s=0.2)  # fmt: skip


def copy_versions(demo_home: DemoHome, registry_uri: str) -> None:
    """The session's trained v1 and v2 registered in the mlflow server, as a CI would (with
    MLflow's own request timeout, not the services' short one: the processes are starting)."""
    source = MlflowRegistry(demo_home.settings.registry_uri, demo_home.settings.artifact_root)
    target = MlflowRegistry(registry_uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
        for role in ("baseline", "better"):
            version = demo_home.versions[role]
            assert copy_version(source, target, version) == version


def _migrated(store_url: str) -> bool:
    from sqlalchemy import inspect

    engine = open_engine(store_url, create=False)
    try:
        return "rollouts" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _stop_and_show_logs(supervisor: Supervisor, logs: Path) -> None:
    supervisor.stop()
    for log in sorted(logs.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


# One step at 50% until each arm has 100 requests; errors and accuracy (from the labels) with
# margins loose enough for a few hundred requests; a smoke test pinned to the candidate first.
def canary_spec(rows: Any) -> dict[str, Any]:
    return {
        "strategy": {
            "canary": {
                "steps": [{"weight": 50, "min_requests": 100}],
                "sticky_key": "header:x-rollout-key",
            }
        },
        "analysis": {
            "gates": [
                {"error_rate": {"max_increase": 0.05}},
                {"quality": {"metric": "accuracy", "max_decrease": 0.15, "min_labels": 40}},
            ],
            "on_inconclusive": "extend",
        },
        "smoke_tests": [{"name": "three rows", "payload": _payload(rows.head(3))}],
    }


def _payload(frame: Any) -> dict[str, Any]:
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def _state(api: httpx.Client, rollout_id: str) -> str:
    reply = api.get(f"/v1/rollouts/{rollout_id}/report")
    assert reply.status_code == 200, reply.text
    return str(reply.json()["rollout"]["state"])


def _start(api: httpx.Client, version: str, spec: dict[str, Any] | None) -> str:
    body = {"model": MODEL, "candidate": version, "environment": "prod", "spec": spec}
    reply = api.post("/v1/rollouts", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _query(prometheus: str, promql: str) -> dict[str, float]:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    reply.raise_for_status()
    result = reply.json()["data"]["result"]
    return {item["metric"].get("instance", ""): float(item["value"][1]) for item in result}


def test_a_canary_through_the_compose_layout_on_loopback(stack: Stack) -> None:
    data = load_data()
    rows, labels = data.serve_X, [int(v) for v in data.serve_y]
    api, lb = stack.api, stack.lb

    initial = _start(api, "1", None)
    wait_until(lambda: _state(api, initial), "the initial release", until=lambda s: s in TERMINAL)
    assert _state(api, initial) == "succeeded"

    def serves_v1_everywhere() -> bool:
        replies = [lb.post(f"/v1/models/{MODEL}/invocations", json=_payload(rows.head(1)))
                   for _ in range(4)]  # fmt: skip
        return all(r.status_code == 200 and r.headers["x-model-version"] == "1" for r in replies)

    wait_until(serves_v1_everywhere, "both routers to serve v1 through the balancer")

    began = time.monotonic()
    canary = _start(api, "2", canary_spec(rows))
    label_writer = {"authorization": f"Bearer {stack.secrets['ROLLOUT_LABEL_TOKEN']}"}
    arms: dict[str, int] = {}
    labelled: list[dict[str, Any]] = []
    for user in itertools.count():
        if user % 20 == 0:
            # each batch of labels goes to one router and holds ids both routers signed
            if labelled:
                posted = lb.post("/v1/feedback", json=labelled, headers=label_writer)
                assert (posted.status_code, posted.json()) == (202, {"accepted": len(labelled)})
                labelled = []
            if _state(api, canary) in TERMINAL:
                break
        assert user < 3000, f"no decision after {user} requests: {_state(api, canary)}"
        index = user % len(rows)
        reply = lb.post(
            f"/v1/models/{MODEL}/invocations",
            json=_payload(rows.iloc[index : index + 1]),
            headers={"x-rollout-key": f"user-{user}"},
        )
        assert reply.status_code == 200, reply.text
        arms[reply.headers["x-arm"]] = arms.get(reply.headers["x-arm"], 0) + 1
        labelled.append({"request_id": reply.headers["x-request-id"], "label": labels[index]})

    print(f"[{time.monotonic() - began:5.1f} s] canary decided after {sum(arms.values())} requests")
    report = api.get(f"/v1/rollouts/{canary}/report").json()
    for event in report["events"]:
        print(f"  {event['ts'] - report['events'][0]['ts']:6.1f} s {event['from_state']} -> "
              f"{event['to_state']}: {event['reason'][:150]}")  # fmt: skip
    assert report["rollout"]["state"] == "succeeded", report["rollout"]
    assert [r["version"] for r in report["releases"]] == ["2"]
    gates = {
        (gate["gate"], gate["verdict"])
        for event in report["events"]
        for gate in (event.get("evidence") or {}).get("gates", [])
    }
    assert {("three rows", "pass"), ("quality", "pass"), ("error_rate", "pass")} <= gates
    assert arms.get("canary", 0) >= 100 and arms.get("baseline", 0) >= 100, arms
    status = api.get(f"/v1/models/{MODEL}/environments/prod/status").json()
    assert status["plan"]["baseline_version"] == "2", status["plan"]
    # a label without the label writer's token is refused, through either router
    anonymous = [
        lb.post("/v1/feedback", json={"request_id": "x" * 32, "label": 1}) for _ in range(2)
    ]
    assert [r.status_code for r in anonymous] == [401, 401]

    if stack.prometheus is None:
        pytest.skip("prometheus is not installed (deploy/install-tools.sh): scrapes unchecked")
    instances = {urlsplit(url).netloc for url in stack.routers}
    up = wait_until(
        lambda: _query(stack.prometheus or "", 'up{job="router"}'),
        "Prometheus to scrape both routers",
        until=lambda up: up == dict.fromkeys(instances, 1.0),
    )
    assert up == dict.fromkeys(instances, 1.0)
    served = wait_until(
        lambda: _query(stack.prometheus or "", "sum by (instance) (rollout_router_requests_total)"),
        "Prometheus to see requests served by both routers",
        until=lambda served: set(served) == instances and min(served.values()) >= 100,
    )
    assert sum(served.values()) >= sum(arms.values())
