"""schemathesis over the manager API's own OpenAPI, against the real app on loopback.

The API (``rollout.api.create_app``) is served by uvicorn on a loopback port over a real
Manager: a copy of the demo's MLflow registry, a SQLite store, ``bc`` v1 released to ``dev``
and a v2 rollout to ``staging`` that has already ended. Every documented operation is fuzzed
with positive (schema-valid) and negative (schema-violating) requests as an admin, as a viewer
and without a token; the assertion is **no 5xx and no dropped connection**, whatever is sent.
Replies with a documented status must match its schema and content type.

Bounded for CI: ``FUZZ_EXAMPLES`` per operation, mode and caller (about 800 requests, under a
minute); the ``soak``-marked test (``pytest -m soak``, not in the default run) runs ten times
as many.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from fuzzing import Findings, fuzz_schema, report

from conftest import MODEL, DemoHome, serving, wait_until
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.manager import Manager
from rollout.settings import Settings
from rollout.spec import load_spec

FUZZ_EXAMPLES = 12
SLOW_EXAMPLES = 120
CALLERS = {"admin": "fuzz-admin:admin", "viewer": "fuzz-viewer"}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-fuzz-secret"}


@dataclass(frozen=True)
class Api:
    client: httpx.Client
    manager: Manager

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)


@pytest.fixture(scope="module")
def api(demo_home: DemoHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    target = tmp_path_factory.mktemp("fuzz-api")
    shutil.copy(demo_home.settings.home / "mlflow.db", target / "mlflow.db")
    settings = Settings(
        home=Path(target),
        registry_uri=f"sqlite:///{target / 'mlflow.db'}",
        store_url=f"sqlite:///{target / 'rollout.db'}",
        artifact_root=demo_home.settings.artifact_root,
    )
    manager = Manager(settings)
    versions = demo_home.versions
    instant = {
        "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
        "analysis": {"gates": "none"},
    }
    for version in (versions["baseline"], versions["better"]):
        rollout_id = manager.start(MODEL, version, "dev", load_spec(instant), "setup")

        def ended(rid: str = rollout_id) -> bool:
            manager.tick()
            return not manager.rollout(rid).active

        wait_until(ended, f"rollout {rollout_id} to end")
    tokens = ",".join(
        f"{entry}={hashlib.sha256(f'{name}-fuzz-secret'.encode()).hexdigest()}"
        for name, entry in CALLERS.items()
    )
    try:
        with serving(create_app(manager, parse_tokens(tokens))) as client:
            yield Api(client, manager)
    finally:
        manager.close()


def _fuzz(api: Api, caller: str | None, max_examples: int) -> Findings:
    schema = schemathesis.openapi.from_dict(api.client.get("/openapi.json").json())
    headers = bearer(caller) if caller is not None else None
    return fuzz_schema(schema, api.base_url, headers=headers, max_examples=max_examples)


@pytest.fixture(scope="module", params=["admin", "viewer", None], ids=["admin", "viewer", "anon"])
def fuzzed(api: Api, request: pytest.FixtureRequest) -> tuple[str | None, Findings]:
    """Every operation fuzzed once per caller (positive and negative cases)."""
    caller: str | None = request.param
    return caller, _fuzz(api, caller, FUZZ_EXAMPLES)


def test_the_fixture_serves_a_real_manager(api: Api) -> None:
    """The fuzzing below reaches real data: history and the audit log are not empty."""
    history = api.client.get(
        f"/v1/models/{MODEL}/environments/dev/history", headers=bearer("admin")
    )
    assert history.status_code == 200
    assert [release["version"] for release in history.json()][:2] == ["2", "1"]
    assert api.client.get("/v1/audit/verify", headers=bearer("viewer")).json()["ok"] is True


def test_no_request_gets_a_5xx(fuzzed: tuple[str | None, Findings]) -> None:
    caller, findings = fuzzed
    assert findings.requests >= 150, report(findings)
    assert findings.unique_server_errors() == [], report(findings)
    if caller is not None:  # the fuzzing got past authentication to the manager
        assert findings.statuses[200] + findings.statuses[404] >= 20, report(findings)


def test_without_a_token_nothing_is_done(fuzzed: tuple[str | None, Findings]) -> None:
    caller, findings = fuzzed
    if caller is not None:
        pytest.skip("only for the anonymous caller")
    served = {op for op, n in findings.by_operation.items() if op.endswith(" 200")}
    assert served <= {"GET /healthz 200"}, report(findings)
    assert findings.statuses[401] >= 100, report(findings)


def test_replies_conform_to_the_schema(fuzzed: tuple[str | None, Findings]) -> None:
    _caller, findings = fuzzed
    assert sorted(set(findings.nonconforming)) == [], report(findings)


@pytest.mark.soak
def test_no_request_gets_a_5xx_long(api: Api) -> None:
    findings = _fuzz(api, "admin", SLOW_EXAMPLES)
    assert findings.unique_server_errors() == [], report(findings)
