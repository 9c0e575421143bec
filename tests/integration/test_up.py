"""The production process layout (compose.yaml) with real processes on loopback.

``mlflow server`` as the registry over HTTP, a PostgreSQL store, the manager and the router as
separate processes started by the same :class:`~rollout.up.Supervisor` that ``rollout up`` uses;
the CLI drives a release, a canary and a rollback through them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import MODEL, DemoHome
from rollout.cli import main as cli
from rollout.manager import Manager
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


def _eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s}s: last value {last!r}")


@pytest.fixture
def layout(home: DemoHome, postgres_url: str, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
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
    first = _eventually(lambda: _predict(base_url, home, "k0").status_code == 200 and "ok")
    assert first == "ok"
    assert _predict(base_url, home, "k1").headers["x-model-version"] == "1"

    # A canary at 30%: the router splits, the prediction log lands in PostgreSQL.
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert cli([*common, "start", MODEL, "--candidate", "2", "--env", "prod", "-f", str(spec)]) == 0
    _eventually(
        lambda: "canary" in {_predict(base_url, home, f"u{i}").headers["x-arm"] for i in range(40)}
    )
    arms = [_predict(base_url, home, f"user-{i}").headers["x-arm"] for i in range(200)]
    assert 30 <= arms.count("canary") <= 90  # 30% of 200, well inside chance
    manager = Manager(settings)
    status = manager.status(MODEL, "prod")
    assert status.rollout is not None and status.rollout.state == "progressing"
    assert status.plan is not None and status.plan.canary_weight_pct == 30
    rollout_id = status.rollout.id
    log = PredictionLog(manager.engine)
    counts = _eventually(lambda: (c := log.count(rollout_id)) and c.get("canary", 0) >= 30 and c)
    assert counts["baseline"] >= 100

    # Rollback through the CLI: within a second or two every request is on v1 again.
    assert cli([*common, "rollback", MODEL, "--env", "prod"]) == 0

    def all_on_v1() -> bool:
        return {
            _predict(base_url, home, f"w{i}").headers["x-model-version"] for i in range(30)
        } == {"1"}

    assert _eventually(all_on_v1, timeout_s=5)
    assert manager.rollout(rollout_id).state == "rolled_back"
    assert manager.registry.alias_version(MODEL, "prod") == "1"
    manager.close()
