"""The production process layout (compose.yaml) with real processes on loopback.

``mlflow server`` as the registry over HTTP, a PostgreSQL store, the manager and the router as
separate processes started by the same :class:`~rollout.up.Supervisor` that ``rollout up`` uses;
the CLI drives a release, a canary and a rollback through them.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, DemoHome, wait_until
from rollout.cli import main as cli
from rollout.manager import Manager
from rollout.router_keys import router_secrets
from rollout.settings import Settings
from rollout.store.predictions import PredictionLog
from rollout.up import Supervisor, free_port, process_specs

pytestmark = pytest.mark.postgres

SPEC = """
strategy:
  canary:
    steps:
      - {weight: 30, min_requests: 100000}
analysis:
  gates: [error_rate]
"""


@pytest.fixture
def layout(
    home: DemoHome, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, str]]:
    # every process of a PostgreSQL store (the manager, this test's CLI) shares the audit key
    monkeypatch.setenv("ROLLOUT_AUDIT_KEY", "7a" * 32)
    mlflow_port, router_port = free_port(), free_port()
    settings = Settings(
        home=home.settings.home,
        registry_uri=f"http://127.0.0.1:{mlflow_port}",
        store_url=postgres_url,
        artifact_root=home.settings.artifact_root,
    )
    supervisor = Supervisor(settings, log_dir=tmp_path / "logs")
    specs = process_specs(
        settings, router_port=router_port, mlflow_port=mlflow_port, manager_interval_s=0.2
    )
    assert [s.role for s in specs] == ["registry", "router", "manager"]
    try:
        for spec in specs:
            supervisor.start(spec, timeout_s=120)
        yield settings, f"http://127.0.0.1:{router_port}"
    finally:
        supervisor.stop()
        for log in sorted((tmp_path / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def _predict(base_url: str, home: DemoHome, key: str) -> httpx.Response:
    rows = home.data.serve_X.iloc[:1]
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    return httpx.post(
        f"{base_url}/v1/models/{MODEL}/invocations",
        json=payload,
        headers={"x-rollout-key": key},
        timeout=10,
    )


def test_release_canary_and_rollback_across_processes(
    layout: tuple[Settings, str], home: DemoHome, tmp_path: Path
) -> None:
    settings, base_url = layout
    common = ["--home", str(settings.home), "--registry-uri", settings.registry_uri]
    common += ["--store-url", settings.store_url]

    # Initial release through the mlflow server; the router picks it up from PostgreSQL.
    assert cli([*common, "start", MODEL, "--candidate", "1", "--env", "prod"]) == 0
    wait_until(
        lambda: _predict(base_url, home, "k0").status_code,
        "the router to serve the initial release",
        until=lambda status: status == 200,
        interval_s=0.1,
        ignoring=(httpx.HTTPError,),
    )
    assert _predict(base_url, home, "k1").headers["x-model-version"] == "1"

    # A canary at 30%: the router splits, the prediction log lands in PostgreSQL.
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert cli([*common, "start", MODEL, "--candidate", "2", "--env", "prod", "-f", str(spec)]) == 0
    wait_until(
        lambda: {_predict(base_url, home, f"u{i}").headers["x-arm"] for i in range(40)},
        "the router to send some requests to the canary",
        until=lambda arms: "canary" in arms,
        interval_s=0.1,
        ignoring=(httpx.HTTPError,),
    )
    arms = [_predict(base_url, home, f"user-{i}").headers["x-arm"] for i in range(200)]
    assert 30 <= arms.count("canary") <= 90  # 30% of 200, well inside chance
    manager = Manager(settings)
    status = manager.status(MODEL, "prod")
    assert status.rollout is not None and status.rollout.state == "progressing"
    assert status.plan is not None and status.plan.canary_weight_pct == 30
    rollout_id = status.rollout.id
    log = PredictionLog(manager.engine)
    counts = wait_until(
        lambda: log.count(rollout_id),
        "30 canary requests in the prediction log",
        until=lambda counts: counts.get("canary", 0) >= 30,
        interval_s=0.1,
    )
    assert counts["baseline"] >= 100

    # Labels: the router takes them from the home's label writer only (rollout.router_keys).
    secrets = router_secrets(settings.home)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (secrets.key_file, secrets.token_file)} == {
        0o600
    }
    rid = _predict(base_url, home, "labelled").headers["x-request-id"]
    body = {"request_id": rid, "label": 1}
    anonymous = httpx.post(f"{base_url}/v1/feedback", json=body, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    writer = {"authorization": f"Bearer {secrets.label_token}"}
    stored = httpx.post(f"{base_url}/v1/feedback", json=body, headers=writer, timeout=10)
    assert (stored.status_code, stored.json()) == (202, {"accepted": 1})

    # Rollback through the CLI: once the router applies the rolled-back plan, every request is
    # on v1 again (how soon after the rollback is a benchmark figure: bench/timings.py).
    assert cli([*common, "rollback", MODEL, "--env", "prod"]) == 0
    rolled_back = manager.plans.get("prod", MODEL)
    assert rolled_back is not None and rolled_back.canary_version is None
    wait_until(
        lambda: httpx.get(f"{base_url}/v1/models", timeout=10).json()["models"],
        f"the router to apply the rolled-back plan (generation {rolled_back.generation})",
        until=lambda models: [m["generation"] for m in models] == [rolled_back.generation],
        interval_s=0.1,
    )
    served = {_predict(base_url, home, f"w{i}").headers["x-model-version"] for i in range(30)}
    assert served == {"1"}
    assert manager.rollout(rollout_id).state == "rolled_back"
    assert manager.registry.alias_version(MODEL, "prod") == "1"
    manager.close()
