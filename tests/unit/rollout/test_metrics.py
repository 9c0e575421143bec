"""The store's metrics (rollout.metrics) and who may scrape them (rollout.metrics_http and
rollout.metrics_api).

A rollout in a known state, written by the store's own writers on SQLite and PostgreSQL, and
the exact samples a scrape gives for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine

from conftest import serving
from contract.clock import ManualClock
from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore
from contract.sql.schema import monitor_windows, webhook_deliveries
from monitors.results import GateResult
from rollout.api import create_app
from rollout.lease import Lease
from rollout.lifecycle import Decision, StepEvidence
from rollout.manager import Manager
from rollout.metrics import PHASES, StoreCollector
from rollout.metrics_api import scrape_token_digest
from rollout.metrics_http import (
    Cached,
    manager_registry,
    metrics_address,
    serve_manager_metrics,
)
from rollout.settings import Settings
from rollout.spec import load_spec
from rollout.store.audit import AuditLog
from rollout.store.looks import LookStore
from rollout.store.records import EventRecord, RecordStore, RolloutRecord

NOW = 1_800_000_000.0
SPEC = load_spec(
    {
        "strategy": {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}},
        "analysis": {"alpha": 0.06, "gates": ["error_rate", "latency", "output_drift"]},
    }
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def at(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (found, labels), value in samples.items() if found == name}


def gate(name: str, verdict: str, effect: float, low: float, high: float) -> GateResult:
    return GateResult(
        gate=name,
        test="t",
        statistic=0.0,
        p_value=None,
        effect_size=effect,
        threshold=0.02,
        n_baseline=900,
        n_canary=100,
        verdict=verdict,  # type: ignore[arg-type]
        reason="",
        ci_low=low,
        ci_high=high,
        blocking=name != "output_drift",
    )


def write_known_state(engine: Engine, clock: ManualClock) -> str:
    """bc/prod: rollout r1 (v1 → v2) progressing at step 1 (50%) since NOW - 90, two looks
    kept; bc/staging: an older rollout, then r2 succeeded; a closed monitoring window; a
    failed webhook, two pending (one retrying); the lease; three audit rows."""
    records = RecordStore(engine)
    spec = SPEC.canonical_json()

    def rollout(rid: str, env: str, state: str, created: float, step: int) -> None:
        record = RolloutRecord(
            id=rid,
            model="bc",
            environment=env,
            strategy="canary",
            baseline_version="1",
            candidate_version="2",
            spec=spec,
            config_hash="h",
            state=state,
            step_index=step,
            step_started_at=created,
            created_at=created,
            updated_at=NOW - 5,
            started_by="ann",
        )
        with engine.begin() as conn:
            records.create(conn, record)

    def event(rid: str, ts: float, from_state: str | None, to_state: str) -> None:
        with engine.begin() as conn:
            records.add_event(conn, EventRecord(rid, ts, from_state, to_state, 0, "m", "r"))

    rollout("r0", "staging", "aborted", NOW - 9000, 0)
    rollout("r2", "staging", "succeeded", NOW - 5000, 1)
    event("r2", NOW - 4000, "promoting", "succeeded")
    rollout("r1", "prod", "progressing", NOW - 1000, 1)
    event("r1", NOW - 1000, None, "pending")
    event("r1", NOW - 90, "progressing", "progressing")  # a step: no change of state counts
    event("r1", NOW - 300, "verifying", "progressing")
    event("r1", NOW - 30, "progressing", "progressing")  # a note, not a transition
    looks = LookStore(engine)
    first = (gate("error_rate", "inconclusive", 0.01, -0.02, 0.04),)
    looks.record("r1", StepEvidence("inconclusive", first, 500, 40, step_index=1), NOW - 60)
    newest = (
        gate("error_rate", "pass", 0.004, -0.01, 0.015),
        gate("latency", "inconclusive", 1.1, 0.9, float("inf")),
        gate("output_drift", "fail", 0.3, 0.2, 0.4),
    )
    looks.record("r1", StepEvidence("inconclusive", newest, 900, 100, step_index=1), NOW - 10)
    plans = SqlPlanStore(engine, now=clock.time)
    plans.put(TrafficPlan("prod", "bc", "1", "2", 50, rollout_id="r1"))
    plans.put(TrafficPlan("staging", "bc", "2"))
    window = {"environment": "prod", "model": "bc", "labelled": 3, "wrong": 1, "summary": "{}"}
    with engine.begin() as conn:
        for start, version, requests, alarm in (
            (NOW - 7200, "1", 50, None),
            (NOW - 3600, "1", 70, "errors"),
            (NOW - 3600, "2", 7, None),
        ):
            conn.execute(
                monitor_windows.insert().values(
                    **window,
                    version=version,
                    start=start,
                    end=start + 3600,
                    requests=requests,
                    errors=2,
                    alarm=alarm,
                    created_at=NOW,
                )
            )
        for status, attempts in (("failed", 5), ("pending", 0), ("pending", 2), ("delivered", 1)):
            conn.execute(
                webhook_deliveries.insert().values(
                    url="http://127.0.0.1:9/hook",
                    event="e",
                    payload="{}",
                    status=status,
                    attempts=attempts,
                    next_attempt_at=NOW,
                    created_at=NOW,
                )
            )
    Lease(engine, holder="manager-a", ttl_s=5.0, clock=clock).acquire()
    audit = AuditLog(engine, b"k" * 32, clock)
    for verb in ("start", "pause", "resume"):
        audit.append("ann", verb, "bc", "prod", "allowed", 200)
    return audit.head().hash


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


def test_a_known_state_gives_exact_samples(engine: Engine) -> None:
    clock = ManualClock(NOW)
    head_hash = write_known_state(engine, clock)
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, clock))
    samples = scrape(registry)

    assert at(samples, "rollout_store_up") == 1.0
    prod, staging = (
        {"model": "bc", "environment": "prod"},
        {"model": "bc", "environment": "staging"},
    )
    assert {p: at(samples, "rollout_phase", **prod, phase=p) for p in PHASES} == {
        p: float(p == "progressing") for p in PHASES
    }
    assert at(samples, "rollout_phase", **staging, phase="succeeded") == 1.0  # r2, not r0
    assert at(samples, "rollout_phase", **staging, phase="aborted") == 0.0
    info = {
        "rollout_id": "r1",
        "baseline": "1",
        "candidate": "2",
        "strategy": "canary",
    }
    assert at(samples, "rollout_info", **prod, **info) == 1.0
    assert at(samples, "rollout_step_index", **prod) == 1.0
    # entered progressing at NOW - 300 (the later same-state events are steps and notes)
    assert named(samples, "rollout_time_in_state_seconds") == {
        frozenset({**prod, "phase": "progressing"}.items()): 300.0,
        frozenset({**staging, "phase": "succeeded"}.items()): 4000.0,
    }
    # three gates, two blocking: 0.03 each, 0.06 spent at the start
    assert at(samples, "rollout_alpha_spent", **prod) == pytest.approx(0.06)
    assert at(samples, "rollout_canary_weight_pct", **prod) == 50.0
    assert at(samples, "rollout_canary_weight_pct", **staging) == 0.0
    assert at(samples, "rollout_plan_version_info", **prod, arm="canary", version="2") == 1.0
    assert ("rollout_plan_version_info", frozenset({**staging, "arm": "canary"}.items())) not in (
        samples
    )
    # the newest look only, of the active rollout only
    assert named(samples, "rollout_window_requests") == {
        frozenset({**prod, "arm": "baseline"}.items()): 900.0,
        frozenset({**prod, "arm": "canary"}.items()): 100.0,
    }
    assert at(samples, "rollout_look_timestamp_seconds", **prod) == NOW - 10
    assert at(samples, "rollout_gate_effect", **prod, gate="error_rate") == 0.004
    assert at(samples, "rollout_gate_lower_bound", **prod, gate="latency") == 0.9
    assert ("rollout_gate_upper_bound", frozenset({**prod, "gate": "latency"}.items())) not in (
        samples
    )  # an infinite bound is no bound yet: no series
    assert at(samples, "rollout_gate_upper_bound", **prod, gate="output_drift") == 0.4
    assert at(samples, "rollout_gate_threshold", **prod, gate="error_rate") == 0.02
    assert at(samples, "rollout_gate_blocking", **prod, gate="output_drift") == 0.0
    verdicts = {
        dict(labels)["gate"]: dict(labels)["verdict"]
        for labels, value in named(samples, "rollout_gate_verdict").items()
        if value == 1.0
    }
    assert verdicts == {"error_rate": "pass", "latency": "inconclusive", "output_drift": "fail"}
    # the newest closed window: both versions that served in it
    assert named(samples, "rollout_monitor_window_requests") == {
        frozenset({**prod, "version": "1"}.items()): 70.0,
        frozenset({**prod, "version": "2"}.items()): 7.0,
    }
    assert at(samples, "rollout_monitor_alarm", **prod, version="1") == 1.0
    assert at(samples, "rollout_monitor_alarm", **prod, version="2") == 0.0
    assert at(samples, "rollout_monitor_window_end_timestamp_seconds", **prod, version="2") == NOW
    assert at(samples, "rollout_monitor_window_wrong", **prod, version="1") == 1.0
    assert named(samples, "rollout_webhook_deliveries") == {
        frozenset({("status", "pending")}): 1.0,
        frozenset({("status", "retrying")}): 1.0,
        frozenset({("status", "failed")}): 1.0,
    }
    assert at(samples, "rollout_lease_info", name="manager", holder="manager-a") == 1.0
    assert at(samples, "rollout_lease_expires_timestamp_seconds", name="manager") == NOW + 5
    assert at(samples, "rollout_audit_head_count") == 3.0
    assert at(samples, "rollout_audit_head_info", hash=head_hash) == 1.0


def test_an_empty_store_and_a_dead_one(tmp_path: Path) -> None:
    engine = open_engine("sqlite://")
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, ManualClock(NOW)))
    samples = scrape(registry)
    assert at(samples, "rollout_audit_head_count") == 0.0
    assert named(samples, "rollout_phase") == {}
    assert at(samples, "rollout_webhook_deliveries", status="failed") == 0.0
    engine.dispose()

    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    registry = CollectorRegistry()
    registry.register(StoreCollector(dead, ManualClock(NOW)))
    assert scrape(registry) == {("rollout_store_up", frozenset()): 0.0}


def test_the_cache_reads_the_store_at_most_once_per_second() -> None:
    calls: list[int] = []

    class Counting(StoreCollector):
        def collect(self):  # type: ignore[no-untyped-def]
            calls.append(1)
            return super().collect()

    engine = open_engine("sqlite://")
    clock = ManualClock(0.0)
    cached = Cached(Counting(engine, clock), ttl_s=1.0, now=clock.time)
    for step_s in (0.0, 0.5, 0.7):
        clock.advance(step_s)
        assert any(m.name == "rollout_store_up" for m in cached.collect())
    assert len(calls) == 2  # at 0.0 and at 1.2; 0.5 was served from the cache
    engine.dispose()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"ROLLOUT_MANAGER_METRICS_PORT": "9100"}, ("127.0.0.1", 9100)),
        (
            {"ROLLOUT_MANAGER_METRICS_PORT": " 9100", "ROLLOUT_MANAGER_METRICS_HOST": "0.0.0.0"},
            ("0.0.0.0", 9100),
        ),
    ],
)
def test_metrics_address(environ: dict[str, str], expected: object) -> None:
    assert metrics_address(environ) == expected


@pytest.mark.parametrize("bad", ["0", "65536", "-1", "port", "91.0"])
def test_a_bad_metrics_port_names_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=r"ROLLOUT_MANAGER_METRICS_PORT: expected a port number"):
        metrics_address({"ROLLOUT_MANAGER_METRICS_PORT": bad})


@pytest.mark.parametrize("bad", ["abc", "a" * 63, "g" * 64])
def test_a_bad_scrape_token_digest_names_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=r"ROLLOUT_METRICS_TOKEN_SHA256: expected the sha256"):
        scrape_token_digest({"ROLLOUT_METRICS_TOKEN_SHA256": bad})


def _manager(tmp_path: Path, clock: ManualClock) -> Manager:
    home = tmp_path
    settings = Settings(
        home=home,
        registry_uri=f"sqlite:///{home / 'mlflow.db'}",
        store_url=f"sqlite:///{home / 'rollout.db'}",
        artifact_root=str(home / "artifacts"),
    )
    return Manager(settings, environments=["dev", "staging", "prod"], clock=clock)


def test_the_api_serves_metrics_to_the_scrape_token_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = _manager(tmp_path, ManualClock(NOW))
    write_known_state(manager.engine, ManualClock(NOW))
    with serving(create_app(manager, tokens={})) as client:
        off = client.get("/metrics")
        assert off.status_code == 404
        assert "ROLLOUT_METRICS_TOKEN_SHA256" in off.json()["message"]
    digest = hashlib.sha256(b"scrape-me").hexdigest()
    manager.settings = Settings.from_env(
        {"ROLLOUT_METRICS_TOKEN_SHA256": digest.upper()}, home=tmp_path
    )  # upper-case hex is the same digest
    assert manager.settings.metrics_token_sha256 == digest
    with serving(create_app(manager, tokens={})) as client:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "scrape-me"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error_code"] == "unauthenticated"  # as every API 401
        ok = client.get("/metrics", headers={"authorization": "Bearer scrape-me"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
        assert 'rollout_canary_weight_pct{environment="prod",model="bc"} 50.0' in ok.text
        assert "rollout_manager_lease_held" not in ok.text  # the manager process's own
    manager.close()


def test_the_manager_port_counts_the_loops_decisions(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    manager = _manager(tmp_path, clock)
    registry = manager_registry(manager)
    decision = Decision("progressing", "paused", "inconclusive", "gates undecided")
    for observe in manager.loop.observers:
        observe(decision)
    samples = scrape(registry)
    key = {"outcome": "paused", "reason": "inconclusive"}
    assert at(samples, "rollout_manager_decisions_total", **key) == 1.0
    assert at(samples, "rollout_manager_lease_held") == 0.0

    server = serve_manager_metrics(manager, ("127.0.0.1", 0))
    try:
        port = server.server_address[1]
        reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert reply.status_code == 200
        assert "rollout_store_up 1.0" in reply.text
    finally:
        server.shutdown()
        server.server_close()
        manager.close()
