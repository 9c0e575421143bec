"""A registry outage during a rollout is waited out; only a believed "not found" ends one.

``mlflow server`` runs as a subprocess on loopback over a copy of the demo's SQLite registry;
the manager (real SQLite store) reaches it over HTTP and is ticked by the test, with prediction
records written as a router writes them. Attack 9 of issue 11: SIGKILL of the registry at step
2 rolled v2 back as "model 'bc' version '2' not found"; here the rollout waits with the reason
and is promoted once the registry is back. A version that really is deleted rolls back, but
only after the registry said so three times over ten seconds (:mod:`rollout.outage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, DemoHome, LogWriter, logged, serving, wait_until
from contract.errors import RegistryUnavailable, VersionNotFound, http_status
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.manager import Manager
from rollout.outage import NOT_FOUND_ANSWERS, NOT_FOUND_OVER_S
from rollout.registry import MlflowRegistry
from rollout.spec import load_spec
from rollout.up import ProcessSpec, Supervisor, free_port, process_specs

SPEC = load_spec(
    {
        "strategy": {
            "canary": {
                "steps": [
                    {"weight": 10, "min_requests": 100},
                    {"weight": 50, "min_requests": 100},
                    {"weight": 100, "min_requests": 50},
                ]
            }
        },
        "analysis": {"gates": [{"error_rate": {"max_increase": 0.05}}]},
    }
)


@dataclass
class Registry:
    """``mlflow server`` over the home's registry file, on one loopback port."""

    supervisor: Supervisor
    spec: ProcessSpec
    url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = self.supervisor.start(self.spec, timeout_s=120)

    def kill(self) -> None:
        """SIGKILL the server and its workers (no goodbye to clients), as a crash would."""
        assert self.process is not None
        family = [self.process.pid, *_descendants(self.process.pid)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        wait_until(lambda: not _answers(self.url), f"{self.url} to stop answering", 30)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def registry(home: DemoHome, tmp_path: Path) -> Iterator[Registry]:
    port = free_port()
    (spec,) = [s for s in process_specs(home.settings, mlflow_port=port) if s.role == "registry"]
    supervisor = Supervisor(home.settings, log_dir=tmp_path / "logs")
    server = Registry(supervisor, spec, f"http://127.0.0.1:{port}")
    server.start()
    try:
        yield server
    finally:
        supervisor.stop()


@pytest.fixture
def manager(home: DemoHome, registry: Registry, tmp_path: Path) -> Iterator[Manager]:
    settings = replace(
        home.settings,
        registry_uri=registry.url,
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
    )
    # probe_every_s=0: each tick asks the registry again (the default waits 2 s between probes)
    client = MlflowRegistry(registry.url, settings.artifact_root, probe_every_s=0.0)
    manager = Manager(settings, registry=client)
    yield manager
    manager.close()


def feed(manager: Manager, rollout_id: str, arm: str, n: int, version: str) -> None:
    """``n`` successful requests served by ``arm``, as a router logs them."""
    LogWriter(manager.engine).write(
        [logged(rollout_id, arm, version, 1, request_id=uuid.uuid4().hex) for _ in range(n)]
    )


def to_step_2(manager: Manager, home: DemoHome) -> str:
    """v1 released, v2's canary past step 1: at 50%."""
    v1, v2 = home.versions["baseline"], home.versions["better"]
    assert manager.rollout(manager.start(MODEL, v1, "prod", actor="alice")).state == "succeeded"
    rollout_id = manager.start(MODEL, v2, "prod", SPEC, actor="alice")
    feed(manager, rollout_id, "baseline", 2000, v1)
    feed(manager, rollout_id, "canary", 500, v2)
    assert [d.event for d in manager.tick()] == ["step_passed"]
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.canary_version, plan.canary_weight_pct) == (v2, 50)
    return rollout_id


def test_registry_killed_at_step_2_is_waited_out_and_v2_is_promoted(
    manager: Manager, registry: Registry, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    rollout_id = to_step_2(manager, home)

    registry.kill()
    # Step 2 and step 3 are judged on the prediction log: the outage does not stop them.
    feed(manager, rollout_id, "baseline", 1000, v1)
    feed(manager, rollout_id, "canary", 1000, v2)
    assert [d.event for d in manager.tick()] == ["step_passed"]
    feed(manager, rollout_id, "canary", 200, v2)
    # The promotion check needs the registry: the rollout waits in promoting, saying why.
    assert [(d.event, d.to_state) for d in manager.tick()] == [("steps_passed", "promoting")]
    record = manager.rollout(rollout_id)
    assert record.state == "promoting"
    assert record.reason is not None
    assert record.reason.startswith("registry unavailable since ")
    assert record.reason.endswith("; waiting")
    assert "did not answer for model 'bc' version '2': connection refused" in record.reason
    assert "not found" not in record.reason
    assert registry.url.removeprefix("http://") not in record.reason  # no internal address
    status = manager.status(MODEL, "prod")  # status needs no registry
    assert status.rollout is not None and status.rollout.reason == record.reason
    held = manager.events(rollout_id)[-1]
    assert (held.from_state, held.to_state, held.actor) == ("promoting", "promoting", "manager")
    assert held.reason == record.reason

    # Every tick asks again (probe_every_s=0) and still waits, with no event per tick.
    n_events = len(manager.events(rollout_id))
    for _ in range(5):
        assert manager.tick() == []
    assert len(manager.events(rollout_id)) == n_events
    assert manager.rollout(rollout_id).state == "promoting"
    assert manager.registry.down_since is not None

    # Back on the same port and registry file: the rollout resumes by itself.
    registry.start()
    wait_until(
        lambda: (manager.tick(), manager.rollout(rollout_id).state)[1],
        "the rollout to be promoted once the registry answers",
        until=lambda state: state == "succeeded",
        interval_s=0.2,
    )
    events = manager.events(rollout_id)
    states = [(e.from_state, e.to_state) for e in events]
    assert ("promoting", "rolling_back") not in states
    assert [s for s in states if s[0] == "promoting"] == [
        ("promoting", "promoting"),  # waiting
        ("promoting", "promoting"),  # resumed
        ("promoting", "succeeded"),
    ]
    resumed = events[-2]
    print(f"outage: {held.reason!r} -> {resumed.reason!r}")  # the figures, with -s
    assert resumed.reason.startswith("registry answers again after ")
    assert resumed.reason.endswith(" s; resuming")
    assert manager.registry.down_since is None
    assert manager.registry.alias_version(MODEL, "prod") == v2
    promotion = manager.history(MODEL, "prod")[0]
    info = manager.registry.resolve(MODEL, v2)
    assert (promotion.kind, promotion.version, promotion.outcome) == ("promotion", v2, "succeeded")
    assert promotion.run_id == info.run_id is not None
    assert promotion.artifact_digest == info.digest is not None


def test_a_deleted_version_rolls_back_only_once_the_registry_said_so_three_times(
    manager: Manager, registry: Registry, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    rollout_id = to_step_2(manager, home)
    manager.registry.client.delete_model_version(MODEL, v2)  # really gone from the registry

    feed(manager, rollout_id, "baseline", 1000, v1)
    feed(manager, rollout_id, "canary", 1000, v2)
    assert [d.event for d in manager.tick()] == ["step_passed"]
    feed(manager, rollout_id, "canary", 200, v2)
    first = time.time()
    assert [d.to_state for d in manager.tick()] == ["promoting"]
    record = manager.rollout(rollout_id)
    assert record.state == "promoting" and record.reason is not None
    every_s = NOT_FOUND_OVER_S / (NOT_FOUND_ANSWERS - 1)
    assert f"(answer 1 of {NOT_FOUND_ANSWERS}, one every {every_s:g} s)" in record.reason
    assert "not found" in record.reason and "asking again before believing it" in record.reason

    moves = wait_until(
        manager.tick,
        "the rollback once 'not found' is believed",
        until=lambda made: made,
        interval_s=0.5,
    )
    assert time.time() - first >= NOT_FOUND_OVER_S
    assert [(d.event, d.to_state) for d in moves] == [
        ("promotion_failed", "rolling_back"),
        ("reverted", "rolled_back"),
    ]
    failed = moves[0]
    assert "not found" in failed.reason
    assert f"answered {NOT_FOUND_ANSWERS} times over 1" in failed.reason  # 10 s or more
    # one event per counted answer, not one per tick
    waits = [
        e.reason
        for e in manager.events(rollout_id)
        if (e.from_state, e.to_state) == ("promoting", "promoting")
    ]
    assert [w[w.index("(answer") :].split(",")[0] for w in waits] == [
        f"(answer {n} of {NOT_FOUND_ANSWERS}" for n in range(1, NOT_FOUND_ANSWERS)
    ]
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and (plan.baseline_version, plan.canary_version) == (v1, None)
    rollback = manager.history(MODEL, "prod")[0]
    # recorded without lineage: the registry no longer has the version
    assert (rollback.kind, rollback.version, rollback.outcome) == ("rollback", v2, "rolled_back")
    assert (rollback.run_id, rollback.artifact_digest) == (None, None)


def test_starting_while_the_registry_is_down_is_a_503_not_a_404(
    manager: Manager, registry: Registry, home: DemoHome
) -> None:
    v1 = home.versions["baseline"]
    registry.kill()
    with pytest.raises(RegistryUnavailable, match="did not answer") as down:
        manager.start(MODEL, v1, "prod", actor="alice")
    assert http_status(down.value) == (503, "unavailable")
    assert "not found" not in str(down.value)
    assert manager.active(MODEL, "prod") is None  # nothing stored

    secret = "alice-secret"
    tokens = parse_tokens(f"alice:deployer={hashlib.sha256(secret.encode()).hexdigest()}")
    with serving(create_app(manager, tokens)) as client:
        reply = client.post(
            "/v1/rollouts",
            json={"model": MODEL, "candidate": v1, "environment": "prod"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert reply.status_code == 503, reply.text
    assert reply.json()["error_code"] == "unavailable"
    assert "not found" not in reply.json()["message"]


def test_a_registry_that_hangs_costs_one_bounded_wait_per_probe(home: DemoHome) -> None:
    """A registry that accepts connections and never answers: one call waits the client's
    timeout (4 s), not MLflow's default retries (minutes); calls in the next 2 s fail at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the kernel; nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = MlflowRegistry(url, home.settings.artifact_root)
        began = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="did not answer"):
            client.resolve(MODEL, "1")
        first_s = time.monotonic() - began
        began = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            client.alias_version(MODEL, "prod")
        second_s = time.monotonic() - began
    print(f"hung registry: first call {first_s:.2f} s, the next {second_s:.3f} s")
    assert 3.5 <= first_s <= 10.0, first_s
    assert second_s < 0.5, second_s
    assert client.down_since is not None


def test_a_registry_that_answers_not_found_is_not_an_outage(
    registry: Registry, home: DemoHome
) -> None:
    client = MlflowRegistry(registry.url, home.settings.artifact_root)
    with pytest.raises(VersionNotFound, match="not found") as missing:
        client.resolve(MODEL, "99")
    assert http_status(missing.value) == (404, "not_found")
    assert client.alias_version(MODEL, "nobody") is None
    assert client.down_since is None
    with httpx.Client() as probe:
        assert probe.get(f"{registry.url}/health").status_code == 200
