"""compose.yaml, .env.example, the Dockerfile and deploy/, checked statically (no Docker engine).

The compose file is validated against the Compose Specification (the ``compose-spec`` package,
offline), then for what the specification cannot know: every service is health-checked and
restarted, no secret is written in the file (each comes from ``.env``, and ``.env.example``
lists exactly the variables used), every ``ROLLOUT_*`` variable is one the code reads, the URLs
name services, databases and logins that exist, the load balancer balances both routers, and
the image's user owns what it writes. The same layout runs for real, as processes on loopback,
in test_stack_loopback.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose

from contract.sql.engine import ROUTER_ROLE
from rollout.cli import build_parser
from rollout.up import ROLES

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "postgres", "registry", "manager", "api", "router-1", "router-2", "lb", "prometheus", "grafana",
}  # fmt: skip
ROUTERS = ("router-1", "router-2")
OURS = ("manager", "api", *ROUTERS)  # `rollout <command>` in our image
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")
# Mounted from the metrics part (deploy/prometheus, deploy/grafana, rollout/metrics_http.py):
# exactly these paths; they must exist once that part is in the tree.
METRICS_MOUNTS = {
    "prometheus": {
        "./deploy/prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "./deploy/prometheus/alerts.yml": "/etc/prometheus/alerts.yml",
    },
    "grafana": {
        "./deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/grafana/dashboards": "/var/lib/grafana/dashboards",
    },
}
METRICS_VARIABLES = {
    "ROLLOUT_MANAGER_METRICS_PORT", "ROLLOUT_MANAGER_METRICS_HOST", "ROLLOUT_METRICS_TOKEN_SHA256",
}  # fmt: skip
METRICS_PART_IN_TREE = (ROOT / "rollout/metrics_http.py").exists()


@pytest.fixture(scope="module")
def text() -> str:
    return (ROOT / "compose.yaml").read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)  # resolves the file's YAML anchors and merge keys
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value for name, value in pairs}


def _env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as written (``${VAR:?message}`` left as it is)."""
    return {str(k): str(v) for k, v in service.get("environment", {}).items()}


def _resolved(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with each ``${VAR...}`` replaced by the name ``VAR``."""
    return {k: VARIABLE.sub(lambda m: m[1], v) for k, v in _env(service).items()}


def _flag(command: list[str], flag: str) -> str:
    return str(command[command.index(flag) + 1])


def test_it_is_a_valid_compose_file(compose: dict[str, Any]) -> None:
    spec = {k: v for k, v in compose.items() if not k.startswith("x-")}  # anchors only
    parsed = PyCompose.from_json(json.dumps(spec))
    assert set(parsed.service_names()) == SERVICES
    broken = json.loads(json.dumps(spec))
    broken["services"]["api"]["healthcheck"]["interval"] = "5 seconds"
    with pytest.raises(ValueError, match="duration"):  # the validator is no rubber stamp
        PyCompose.from_json(json.dumps(broken))


def test_every_process_of_rollout_up_is_a_service(services: dict[str, Any]) -> None:
    for role in ROLES:  # the router runs twice, behind the load balancer
        assert role in services or f"{role}-1" in services, role


def test_every_service_is_health_checked_and_restarted(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy" or dependency == "manager", name


def test_our_services_run_valid_cli_commands(services: dict[str, Any]) -> None:
    parser = build_parser()
    for name in OURS:
        service = services[name]
        assert service["build"] == "."
        args, rest = parser.parse_known_args([str(a) for a in service["command"]])
        assert args.command == name.split("-")[0]
        assert rest == [] or args.command == "router"
    for name in ("manager", "api", "registry", *ROUTERS):  # each health check asks its own port
        service = services[name]
        ports = {_flag(service["command"], "--port")} if "--port" in service["command"] else set()
        ports |= {_env(service).get("ROLLOUT_MANAGER_METRICS_PORT", "")} - {""}
        assert any(f":{port}/" in " ".join(service["healthcheck"]["test"]) for port in ports), name


def test_no_secret_is_written_in_the_compose_file(text: str, services: dict[str, Any]) -> None:
    secretive = re.compile(r"PASSWORD|SECRET|KEY$|TOKENS?$|SHA256$")
    for name, service in services.items():
        for variable, value in _env(service).items():
            if secretive.search(variable):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}: {variable}={value}"
    literal = VARIABLE.sub("", text)  # what is left once every ${VAR} is taken out
    assert re.findall(r"(?im)^[ \t]*[\w-]*(?:password|secret|token)[\w-]*:[ \t]*[^ \t\n#]",
                      literal) == []  # fmt: skip
    passwords = re.findall(r"://[\w-]+:(\$\{[^}]*\}|[^@\s]*)@", text)
    assert len(passwords) == 3 and all(VARIABLE.fullmatch(p) for p in passwords), passwords


def test_env_example_lists_every_variable_and_holds_no_value(
    text: str, compose: dict[str, Any]
) -> None:
    used = set(VARIABLE.findall(text))
    used |= {secret["environment"] for secret in compose["secrets"].values()}
    listed = env_example()
    assert used == set(listed), f"only in compose: {used - set(listed)}; only in .env.example: " \
        f"{set(listed) - used}"  # fmt: skip
    assert {name: value for name, value in listed.items() if value} == {}


def test_make_env_makes_every_variable_the_file_needs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "deploy/make_env.py")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    made = dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("#"))
    assert set(made) == set(env_example())
    assert all(re.fullmatch(r"[0-9a-f]{32,}", value) for name, value in made.items()
               if name != "ROLLOUT_API_TOKENS")  # fmt: skip
    assert re.fullmatch(r"admin:admin=[0-9a-f]{64}", made["ROLLOUT_API_TOKENS"])


def test_every_rollout_variable_is_read_by_the_code(services: dict[str, Any]) -> None:
    code = "\n".join(
        path.read_text() for package in ("contract", "rollout", "router")
        for path in (ROOT / package).rglob("*.py")
    )  # fmt: skip
    used = {variable for service in services.values() for variable in _env(service)}
    unknown = {v for v in used if v.startswith("ROLLOUT_") and v not in code}
    if not METRICS_PART_IN_TREE:
        unknown -= METRICS_VARIABLES
    assert unknown == set()


def test_urls_point_at_services_databases_and_logins_that_exist(
    services: dict[str, Any],
) -> None:
    init = (ROOT / "deploy/postgres-init.sql").read_text()
    databases = set(re.findall(r"CREATE DATABASE (\w+)", init))
    assert databases == {"mlflow", "rollout"}
    registry = services["registry"]
    backend = urlsplit(_resolved(registry)["MLFLOW_BACKEND_STORE_URI"])
    assert (backend.hostname, backend.path, backend.username) == ("postgres", "/mlflow", "mlflow")
    assert "CREATE DATABASE mlflow OWNER mlflow;" in init
    for name in OURS:
        env = _resolved(services[name])
        uri = urlsplit(env["ROLLOUT_REGISTRY_URI"])
        assert uri.hostname == "registry" and uri.port == int(_flag(registry["command"], "--port"))
        assert f"{uri.hostname}:{uri.port}" in _flag(registry["command"], "--allowed-hosts")
        store = urlsplit(env["ROLLOUT_STORE_URL"])
        assert store.hostname in services and store.path.lstrip("/") in databases
        owner = store.username == services["postgres"]["environment"]["POSTGRES_USER"]
        assert owner if name in ("manager", "api") else store.username == ROUTER_ROLE, name
    for name in ("manager", "api"):
        smoke = urlsplit(_env(services[name])["ROLLOUT_ROUTER_URL_PROD"])
        assert smoke.hostname == "lb" and f"{smoke.port}:{smoke.port}" in services["lb"]["ports"]


def test_the_routers_log_in_with_their_own_least_privilege_role(services: dict[str, Any]) -> None:
    init = (ROOT / "deploy/postgres-init.sql").read_text()
    script = (ROOT / "deploy/postgres-init.sh").read_text()
    mounts = services["postgres"]["volumes"]
    assert "./deploy/postgres-init.sh:/docker-entrypoint-initdb.d/init.sh:ro" in mounts
    sql_target = "/etc/rollout/postgres-init.sql"
    assert f"./deploy/postgres-init.sql:{sql_target}:ro" in mounts and f"-f {sql_target}" in script
    assert f"CREATE ROLE {ROUTER_ROLE} LOGIN PASSWORD :'router_password';" in init
    assert '-v router_password="$ROUTER_DB_PASSWORD"' in script
    router_store = urlsplit(_resolved(services["router-1"])["ROLLOUT_STORE_URL"])
    assert router_store.password == "ROUTER_DB_PASSWORD"
    assert services["postgres"]["environment"]["ROUTER_DB_PASSWORD"].startswith(
        "${ROUTER_DB_PASSWORD:?"
    )
    for name in ROUTERS:
        assert _env(services[name])["ROLLOUT_MIGRATE_STORE"] == "0"  # the manager migrates
        assert services[name]["depends_on"]["manager"]


def test_the_load_balancer_balances_both_routers(services: dict[str, Any]) -> None:
    (mount,) = services["lb"]["volumes"]
    source, target, _ = mount.split(":")
    assert target == "/etc/nginx/nginx.conf"
    config = (ROOT / source).read_text()
    (upstream,) = re.findall(r"upstream (\w+) \{([^}]*)\}", config)
    servers = re.findall(r"^\s*server ([\w-]+):(\d+)", upstream[1], re.M)
    assert {host for host, _ in servers} == set(ROUTERS)
    for host, port in servers:
        assert port == _flag(services[host]["command"], "--port")
        assert "ports" not in services[host]  # reached through the balancer only
    assert f"proxy_pass http://{upstream[0]};" in config
    listen = re.search(r"listen (\d+);", config)
    assert listen and f"{listen[1]}:{listen[1]}" in services["lb"]["ports"]
    assert f":{listen[1]}/lb-health" in " ".join(services["lb"]["healthcheck"]["test"])


def test_mounted_paths_exist_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith("./"):
                assert source in declared, f"{name}: volume {source} is not declared"
            elif name in METRICS_MOUNTS:
                assert METRICS_MOUNTS[name].get(source) == target, f"{name}: {volume}"
                assert (ROOT / source).exists() or not METRICS_PART_IN_TREE, source
            else:
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    for name, mounts in METRICS_MOUNTS.items():
        assert {v.split(":")[0] for v in compose["services"][name]["volumes"]} >= set(mounts)


def test_prometheus_gets_its_scrape_token_as_a_secret(compose: dict[str, Any]) -> None:
    (secret,) = compose["services"]["prometheus"]["secrets"]
    assert secret["target"] == "/etc/prometheus/scrape-token"
    assert compose["secrets"][secret["source"]] == {"environment": "ROLLOUT_SCRAPE_TOKEN"}
    scrape = ROOT / "deploy/prometheus/prometheus.yml"
    if scrape.exists():  # the metrics part: its targets are our services and ports
        config = yaml.safe_load(scrape.read_text())
        for job in config["scrape_configs"]:
            for static in job["static_configs"]:
                for target in static["targets"]:
                    host = target.split(":")[0]
                    assert host in compose["services"], target
            credentials = job.get("authorization", {}).get("credentials_file")
            if credentials:
                assert f"/etc/prometheus/{credentials}" == secret["target"]


def test_the_image_runs_as_a_user_who_owns_what_it_writes(services: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert next(line for line in lines if not line.startswith("#")).startswith("FROM python:3.11")
    for line in lines:
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    packages = re.search(r"packages = \[([^]]*)\]", (ROOT / "pyproject.toml").read_text())
    assert packages
    for package in re.findall(r'"(\w+)"', packages[1]):
        assert f"COPY {package} ./{package}" in lines, package
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    assert user not in ("root", "0")
    owned = re.search(rf"chown -R {user}:{user} ([^\n&\\]+)", text)
    assert owned, "the Dockerfile gives its user no directory"
    writable = set(owned[1].split())
    targets = {
        volume.split(":")[1]
        for name in (*OURS, "registry")
        for volume in services[name].get("volumes", [])
        if not volume.startswith("./")
    }
    assert targets <= writable, f"mounted but not the user's: {targets - writable}"
    assert _flag(services["registry"]["command"], "--artifacts-destination") in writable
    for name in ("manager", "api"):
        env = _env(services[name])
        assert env["ROLLOUT_HOME"] in writable  # the step reports: $ROLLOUT_HOME/reports
        assert str(Path(env["ROLLOUT_AUDIT_HEAD_FILE"]).parent) in writable
    assert 'ENTRYPOINT ["rollout"]' in lines


def test_the_routers_need_a_label_writer_a_request_id_key_and_a_pin_digest(
    services: dict[str, Any],
) -> None:
    """Compose refuses to start a router without them (``${VAR:?message}``), rather than
    start one that refuses every label or signs ids with a key of its own."""
    for name in ROUTERS:
        env = _env(services[name])
        for variable in (
            "ROLLOUT_LABEL_TOKEN_SHA256", "ROLLOUT_REQUEST_ID_KEY", "ROLLOUT_PIN_TOKEN_SHA256",
        ):  # fmt: skip
            assert re.fullmatch(r"\$\{" + variable + r":\?[^}]+\}", env[variable]), env[variable]
        assert "ROLLOUT_ALLOW_ANONYMOUS_LABELS" not in env
    assert services["router-1"] == services["router-2"]  # one request id key, one config
