"""``rollout up``: the whole system as processes on loopback, like ``compose.yaml`` describes.

Processes (the same roles as the compose services, see :data:`ROLES`):

- ``registry`` (only with ``--mlflow-server``): ``mlflow server`` on the SQLite registry file, so
  clients talk HTTP to it as they would in production; otherwise the registry is embedded;
- ``router``: ``rollout router`` serving inference on ``--port``, with the home's request id
  key and label writer token (:mod:`rollout.router_keys`, ``<home>/secrets/``);
- ``manager``: ``rollout manager`` advancing rollouts;
- ``api``: ``rollout api`` on ``--api-port`` (8090): the HTTP API and the dashboard at ``/ui/``
  (started by ``rollout up`` itself, after the others; :func:`api_spec`).

On the embedded default's first start an admin token for the API is made and written to
``$ROLLOUT_HOME/admin-token`` (mode 0600; :mod:`rollout.tokens`).

The store is the SQLite file of the data directory unless ``--store-url`` names PostgreSQL.
:class:`Supervisor` starts children, waits for their health checks, and stops them all when one
dies or on Ctrl-C; the demo uses it too.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from rollout.child_env import child_environ
from rollout.router_keys import router_secrets
from rollout.settings import Settings

# The compose services that run our code or MLflow; "postgres" is infrastructure.
ROLES = ("registry", "router", "manager", "api")


@dataclass(frozen=True)
class ProcessSpec:
    role: str
    argv: list[str]
    health_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)


# MLflow 3's server also starts a job runner (six huey consumers) unless told not to: the
# registry needs none of it, and it took 3.65x the memory (1.8 GiB against 0.5) and longer to
# start (bench/mlflow_server.py; README, "Running it for real").
MLFLOW_SERVER_ONLY_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_path_env() -> dict[str, str]:
    """PATH with this interpreter's ``bin/`` first (``mlflow server`` execs its tools)."""
    bin_dir = str(Path(sys.executable).parent)
    return {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def process_specs(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    router_port: int = 8080,
    mlflow_port: int | None = None,
    environment: str = "prod",
    manager_interval_s: float = 0.5,
    metrics_port: int | None = None,
) -> list[ProcessSpec]:
    """The processes of ``rollout up``; with ``mlflow_port`` an ``mlflow server`` comes first."""
    python = sys.executable
    specs: list[ProcessSpec] = []
    if mlflow_port is not None:
        backend = f"sqlite:///{settings.home / 'mlflow.db'}"
        specs.append(
            ProcessSpec(
                role="registry",
                argv=[
                    python, "-m", "mlflow", "server",
                    "--backend-store-uri", backend,
                    "--artifacts-destination", str(settings.home / "artifacts"),
                    "--host", host, "--port", str(mlflow_port),
                    "--workers", "1",
                ],
                health_url=f"http://{host}:{mlflow_port}/health",
                env=dict(MLFLOW_SERVER_ONLY_ENV),
            )
        )  # fmt: skip
    specs.append(
        ProcessSpec(
            role="router",
            argv=[
                python, "-m", "rollout", "router",
                "--host", host, "--port", str(router_port), "--environment", environment,
            ],
            health_url=f"http://{host}:{router_port}/healthz",
            env=router_secrets(settings.home).env(),  # request id key, label writer's digest
        )
    )  # fmt: skip
    metrics = (
        {"ROLLOUT_MANAGER_METRICS_PORT": str(metrics_port), "ROLLOUT_MANAGER_METRICS_HOST": host}
        if metrics_port
        else {}
    )
    specs.append(
        ProcessSpec(
            role="manager",
            argv=[python, "-m", "rollout", "manager", "--interval", str(manager_interval_s)],
            health_url=f"http://{host}:{metrics_port}/metrics" if metrics_port else None,
            env=metrics,
        )
    )
    return specs


def api_spec(host: str, port: int) -> ProcessSpec:
    """``rollout api``: the API and the dashboard, healthy when ``/healthz`` answers."""
    return ProcessSpec(
        role="api",
        argv=[sys.executable, "-m", "rollout", "api", "--host", host, "--port", str(port)],
        health_url=f"http://{host}:{port}/healthz",
    )


class Supervisor:
    """Start child processes, wait until healthy, stop them all together."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir or settings.home / "logs"
        self.children: list[tuple[ProcessSpec, subprocess.Popen[bytes]]] = []

    def start(self, spec: ProcessSpec, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**child_environ(), **self.settings.env(), **venv_path_env(), **spec.env}
        log = (self.log_dir / f"{spec.role}.log").open("ab")
        proc = subprocess.Popen(spec.argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.children.append((spec, proc))
        if spec.health_url:
            self._wait_healthy(spec, proc, timeout_s)
        return proc

    def _wait_healthy(
        self, spec: ProcessSpec, proc: subprocess.Popen[bytes], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        assert spec.health_url is not None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{spec.role} exited with code {proc.returncode} before it was healthy; "
                    f"see {self.log_dir / (spec.role + '.log')}"
                )
            try:
                if httpx.get(spec.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{spec.role} not healthy at {spec.health_url} after {timeout_s:.0f}s")

    def first_exited(self) -> tuple[ProcessSpec, int] | None:
        for spec, proc in self.children:
            code = proc.poll()
            if code is not None:
                return spec, code
        return None

    def stop(self, timeout_s: float = 10.0) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="router port")
    parser.add_argument("--environment", default="prod")
    parser.add_argument(
        "--api-port", type=int, default=8090, help="the API's and the dashboard's port"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9100,
        help="the manager's /metrics port (default 9100; 0: none). The router's are on its port",
    )
    parser.add_argument(
        "--mlflow-server",
        type=int,
        metavar="PORT",
        default=None,
        help="also run `mlflow server` on PORT over the registry file and use it over HTTP",
    )


def first_admin_token(settings: Settings) -> Path | None:
    """On the embedded default with no tokens anywhere, make the first admin token (written to
    ``home/admin-token``, mode 0600; :func:`rollout.tokens.ensure_first_admin`) and say where."""
    from contract.sql.engine import open_engine
    from rollout.auth import parse_tokens
    from rollout.store.tokens import TokenStore
    from rollout.tokens import ensure_first_admin, is_embedded

    if not is_embedded(settings):
        return None
    engine = open_engine(settings.store_url)
    try:
        written = ensure_first_admin(
            settings, TokenStore(engine), parse_tokens(settings.api_tokens)
        )
    finally:
        engine.dispose()
    if written is not None:
        print(f"made the first admin token (identity admin): {written} (mode 0600)", flush=True)
    return written


def taken_port(host: str, ports: dict[str, int | None]) -> str | None:
    """The first of ``ports`` (option → port; None or 0: not used) that ``host`` cannot bind,
    said with its option, or None when all are free."""
    for option, port in ports.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as uvicorn binds: a port whose last connections wait in TIME_WAIT (rollout up
            # stopped a moment ago) is free; one a process listens on is not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                return f"{option} {port}: cannot listen on {host}:{port} ({exc.strerror})"
    return None


def main(args: argparse.Namespace, settings: Settings) -> int:
    taken = taken_port(
        args.host,
        {
            "--port": args.port,
            "--api-port": args.api_port,
            "--metrics-port": args.metrics_port,
            "--mlflow-server": args.mlflow_server,
        },
    )
    if taken is not None:  # before anything starts: say which, not "manager exited with 1"
        print(f"error: {taken}; choose another port (is another rollout up running?)",
              file=sys.stderr)  # fmt: skip
        return 2
    settings.ensure_home()
    first_admin_token(settings)
    if args.mlflow_server is not None:
        settings = Settings(
            home=settings.home,
            registry_uri=f"http://{args.host}:{args.mlflow_server}",
            store_url=settings.store_url,
            artifact_root=settings.artifact_root,
        )
    supervisor = Supervisor(settings)
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    specs = process_specs(
        settings,
        host=args.host,
        router_port=args.port,
        mlflow_port=args.mlflow_server,
        environment=args.environment,
        metrics_port=args.metrics_port,
    )
    specs.append(api_spec(args.host, args.api_port))
    metrics = f"http://{args.host}:{args.port}/metrics (router)"
    if args.metrics_port:
        metrics += f", http://{args.host}:{args.metrics_port}/metrics (manager)"
    try:
        for spec in specs:
            supervisor.start(spec)
            print(f"started {spec.role:<8} {' '.join(spec.argv[1:4])}", flush=True)
        print(
            f"router:   http://{args.host}:{args.port}  (POST /v1/models/<model>/invocations)\n"
            f"api:      http://{args.host}:{args.api_port}  (OpenAPI at /docs)\n"
            f"dashboard: http://{args.host}:{args.api_port}/ui/  (log in with a token)\n"
            f"metrics:  {metrics}\n"
            f"registry: {settings.registry_uri}\nstore:    {settings.store_url}\n"
            f"logs:     {supervisor.log_dir}\n"
            f"labels:   POST /v1/feedback with 'Authorization: Bearer <token>', the token in "
            f"{router_secrets(settings.home).token_file}\nCtrl-C stops everything.",
            flush=True,
        )
        while not stopping:
            exited = supervisor.first_exited()
            if exited is not None:
                spec, code = exited
                print(f"{spec.role} exited with code {code}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        supervisor.stop()
