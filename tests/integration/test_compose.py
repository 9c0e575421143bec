"""compose.yaml and the Dockerfile, checked statically (there is no Docker engine here).

The same process layout runs for real in test_up.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from contract.sql.engine import ROUTER_ROLE
from rollout.cli import build_parser
from rollout.up import ROLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {str(k): str(v) for k, v in env.items()}


def test_every_process_of_rollout_up_is_a_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(ROLES) <= set(services), f"missing services: {set(ROLES) - set(services)}"
    assert "postgres" in services


def test_our_services_run_valid_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for role in ("router", "manager"):
        service = compose["services"][role]
        assert service["build"] == "."
        args, rest = parser.parse_known_args([str(a) for a in service["command"]])
        assert args.command == role
        if role == "manager":
            assert rest == []


def test_urls_point_at_services_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    databases = set(
        re.findall(r"CREATE DATABASE (\w+);", (ROOT / "deploy/postgres-init.sql").read_text())
    )
    for role in ("router", "manager"):
        env = _env(services[role])
        registry = urlsplit(env["ROLLOUT_REGISTRY_URI"])
        store = urlsplit(env["ROLLOUT_STORE_URL"])
        assert registry.scheme == "http" and registry.hostname in services
        assert store.scheme.startswith("postgresql") and store.hostname in services
        assert store.path.lstrip("/") in databases
        for dependency, condition in services[role]["depends_on"].items():
            assert dependency in services
            if dependency == "manager":  # no HTTP port to probe: started is what can be known
                assert condition["condition"] == "service_started"
                continue
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]
    registry_cmd = services["registry"]["command"]
    backend = urlsplit(registry_cmd[registry_cmd.index("--backend-store-uri") + 1])
    assert backend.hostname in services and backend.path.lstrip("/") in databases
    port = registry_cmd[registry_cmd.index("--port") + 1]
    assert urlsplit(_env(services["router"])["ROLLOUT_REGISTRY_URI"]).port == int(port)


def test_the_router_logs_in_with_its_own_least_privilege_role(compose: dict[str, Any]) -> None:
    init = (ROOT / "deploy/postgres-init.sql").read_text()
    router_env = _env(compose["services"]["router"])
    store = urlsplit(router_env["ROLLOUT_STORE_URL"])
    assert store.username == ROUTER_ROLE != urlsplit(_env(compose["services"]["manager"])[
        "ROLLOUT_STORE_URL"]).username  # fmt: skip
    assert f"CREATE ROLE {ROUTER_ROLE} LOGIN PASSWORD '{store.password}';" in init
    assert router_env["ROLLOUT_MIGRATE_STORE"] == "0"  # it may not migrate; the manager does
    assert compose["services"]["router"]["depends_on"]["manager"]


def test_router_port_is_published_and_matches_its_command(compose: dict[str, Any]) -> None:
    router = compose["services"]["router"]
    command = router["command"]
    port = command[command.index("--port") + 1]
    assert f"{port}:{port}" in router["ports"]
    assert f":{port}/healthz" in " ".join(router["healthcheck"]["test"])


def test_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} does not exist"
            else:
                assert source in declared, f"volume {source} is not declared"


def test_dockerfile_copies_what_exists_and_drops_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert lines[0 if not lines[0].startswith("#") else 1].startswith("FROM python:3.11")
    for line in lines:
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert 'ENTRYPOINT ["rollout"]' in lines


def test_the_router_needs_a_label_writer_and_a_request_id_key(compose: dict[str, Any]) -> None:
    """Compose refuses to start the router without them (``${VAR:?message}``), rather than
    start one that refuses every label or signs ids with a key of its own."""
    env = _env(compose["services"]["router"])
    for variable in ("ROLLOUT_LABEL_TOKEN_SHA256", "ROLLOUT_REQUEST_ID_KEY"):
        assert re.fullmatch(r"\$\{" + variable + r":\?[^}]+\}", env[variable]), env[variable]
    assert "ROLLOUT_ALLOW_ANONYMOUS_LABELS" not in env
