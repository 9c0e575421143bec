"""``rollout demo``: the whole loop, for real, on the embedded default.

1. train v1 (baseline), v2 (better) and v3 (broken) and register them in a SQLite MLflow
   registry under a fresh data directory (``<home>/demo``);
2. start a router and a manager as processes on loopback (:class:`rollout.up.Supervisor`);
3. release v1 to ``prod`` (initial release), then drive concurrent HTTP traffic through the
   router with the true labels fed back a little later;
4. canary v2 → expected **promoted**: ``prod`` requires an approval from someone other than
   who started the rollout, so once v2 passed its steps a second identity
   (:data:`APPROVER`) approves it; canary v3 → expected **rolled back** on evidence;
5. print a table per analysed step (weights, requests per arm, each gate's test, statistic,
   p-value, effect and verdict) and the release history.

Exit status 0 only when v2 succeeded, v3 was rolled back, and ``@prod`` ends on v2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from rollout.demo.models import load_data, register_versions
from rollout.demo.traffic import TrafficDriver
from rollout.manager import Manager
from rollout.registry import MlflowRegistry
from rollout.router_keys import router_secrets
from rollout.settings import Settings
from rollout.spec import RolloutSpec, load_spec
from rollout.store.records import RolloutRecord
from rollout.up import Supervisor, free_port, process_specs

MODEL = "breast-cancer"
ENVIRONMENT = "prod"
ROLLOUT_TIMEOUT_S = 200.0
STARTER = "demo"
APPROVER = "bob"  # a second identity: prod's approval must not come from the starter

DEMO_SPEC: dict[str, Any] = {
    "strategy": {
        "canary": {
            "steps": [
                # generous bounds: a busy 2-core machine serves the demo at a third of its
                # usual rate, and a step then needs two minutes to decide
                {"weight": 10, "min_requests": 150, "max_duration": "150s"},
                {"weight": 50, "min_requests": 300, "max_duration": "150s"},
            ],
            "sticky_key": "header:x-rollout-key",
        }
    },
    "analysis": {
        "alpha": 0.05,
        # Margins sized for a demo of a few thousand requests (the defaults are stricter:
        # +0.1 point of errors or 1.5x, 1.2x p95, 1 point of accuracy): each gate passes once
        # its confidence sequence lies within the margin, and fails once it lies beyond.
        "gates": [
            {"error_rate": {"max_increase": 0.01}},
            {"latency": {"quantile": 0.95, "max_ratio": 1.5}},
            {"output_drift": {"method": "auto", "delta": 0.2}},
            {"quality": {"metric": "accuracy", "max_decrease": 0.05}},
        ],
        "on_inconclusive": "extend",
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--keep", action="store_true", help="keep the previous demo directory")


def main(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    home = settings.home / "demo"
    if home.exists() and not getattr(args, "keep", False):
        shutil.rmtree(home)
    demo = Settings.resolve(home=home)
    demo.ensure_home()
    say = _Printer(started)

    say.head("1/5", f"training and registering three versions of {MODEL!r}")
    registry = MlflowRegistry(demo.registry_uri, demo.artifact_root)
    data = load_data()
    versions = register_versions(registry, MODEL, data)
    for role, version in versions.items():
        info = registry.resolve(MODEL, version)
        say.line(f"v{version} {role:<8} run {info.run_id}  {info.digest}")

    say.head("2/5", "starting the router and the manager on loopback")
    port = free_port()
    supervisor = Supervisor(demo)
    manager = Manager(demo, registry=registry)
    try:
        for process in process_specs(demo, router_port=port, manager_interval_s=0.25):
            supervisor.start(process, timeout_s=90)
            say.line(f"{process.role} running (pid {supervisor.children[-1][1].pid})")
        base_url = f"http://127.0.0.1:{port}"

        say.head("3/5", f"initial release of v{versions['baseline']} to {ENVIRONMENT}")
        manager.start(MODEL, versions["baseline"], ENVIRONMENT, actor="demo")
        _wait_ready(base_url, MODEL, versions["baseline"])
        say.line(f"router serves v{versions['baseline']} at {base_url}")

        driver = TrafficDriver(
            base_url,
            MODEL,
            data.serve_X,
            data.serve_y,
            concurrency=args.concurrency,
            label_token=router_secrets(demo.home).label_token,
        )
        driver.start()
        spec = load_spec(DEMO_SPEC)
        outcomes: dict[str, str] = {}
        try:
            for number, role in (("4/5", "better"), ("5/5", "broken")):
                version = versions[role]
                say.head(number, f"canary of v{version} ({role}) against the current release")
                outcomes[role] = _run_rollout(manager, spec, version, driver, say)
        finally:
            driver.stop()
        say.line(
            f"traffic: {driver.stats.sent} requests ({driver.stats.failed} failed), "
            f"{driver.stats.labels_sent} labels fed back ({driver.stats.labels_refused} "
            f"refused), {driver.stats.rate():.0f} req/s"
        )
    finally:
        supervisor.stop(timeout_s=60)  # the manager writes the reports still waiting first

    print()
    _print_history(manager)
    alias = registry.alias_version(MODEL, ENVIRONMENT)
    manager.close()
    ok = demo_succeeded(outcomes, alias, versions, driver.stats.failed)
    print()
    print(
        f"v{versions['better']} (better): {outcomes.get('better')}   "
        f"v{versions['broken']} (broken): {outcomes.get('broken')}   "
        f"@{ENVIRONMENT} → v{alias}   failed requests: {driver.stats.failed}   "
        f"{time.monotonic() - started:.0f}s"
    )
    if not ok:
        print(
            "demo FAILED: expected the better version promoted, the broken one rolled back, "
            "and no failed requests",
            file=sys.stderr,
        )
        return 1
    print("demo OK: the better version was promoted, the broken one rolled back on evidence")
    return 0


def demo_succeeded(
    outcomes: Mapping[str, str], alias: str | None, versions: Mapping[str, str], failed: int
) -> bool:
    """The demo's promise: v2 promoted, v3 rolled back, ``@prod`` on v2, no failed request."""
    return (
        outcomes.get("better") == "succeeded"
        and outcomes.get("broken") == "rolled_back"
        and alias == versions["better"]
        and failed == 0
    )


def _wait_ready(base_url: str, model: str, version: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=2.0)
            models = httpx.get(f"{base_url}/v1/models", timeout=2.0).json()
            if ready.status_code == 200 and version in str(models):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"router did not serve {model} v{version} within {timeout_s:.0f}s")


def _run_rollout(
    manager: Manager, spec: RolloutSpec, version: str, driver: TrafficDriver, say: _Printer
) -> str:
    rollout_id = manager.start(MODEL, version, ENVIRONMENT, spec=spec, actor=STARTER)
    record = manager.rollout(rollout_id)
    steps = spec.strategy.canary.steps if spec.strategy.canary is not None else ()
    say.line(
        f"rollout {rollout_id}: v{record.baseline_version} (baseline) → v{version} (canary), "
        f"steps {' → '.join(f'{s.weight}%' for s in steps)} → promote"
    )
    seen = 0
    last_progress = 0.0
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    while time.monotonic() < deadline:
        record = manager.rollout(rollout_id)
        events = manager.events(rollout_id)
        for event in events[seen:]:
            _print_event(event.to_dict(), say)
        seen = len(events)
        if not record.active:
            say.line(f"rollout {rollout_id} ended: {record.state}")
            _plot(manager, record, say)
            return record.state
        if record.state == "awaiting_approval":
            say.line(
                f"{ENVIRONMENT} requires an approval by someone other than {STARTER}: "
                f"{APPROVER} approves v{version}"
            )
            manager.approve(MODEL, ENVIRONMENT, APPROVER)
            continue
        if time.monotonic() - last_progress >= 2.0:
            last_progress = time.monotonic()
            counts = manager.requests(rollout_id, record.step_started_at or 0.0)
            weight = steps[record.step_index].weight if record.step_index < len(steps) else 100
            say.line(
                f"  … {record.state} step {record.step_index + 1}/{len(steps)} at {weight}%: "
                f"baseline {counts.get('baseline', 0)} / canary {counts.get('canary', 0)} "
                f"requests this step, {driver.stats.rate():.0f} req/s"
            )
        time.sleep(0.25)
    say.line(f"rollout {rollout_id} did not finish within {ROLLOUT_TIMEOUT_S:.0f}s")
    return manager.rollout(rollout_id).state


def _plot(manager: Manager, record: RolloutRecord, say: _Printer) -> None:
    """Draw every kept look's bounds beside the rollout's drift reports."""
    from rollout.plots import plot_looks

    looks = manager.looks(record.id)
    if looks:
        path = manager.settings.home / "reports" / record.id / "looks.png"
        title = f"{MODEL} v{record.candidate_version}: {record.state}"
        say.line(f"  the gates' bounds at every look (rollout looks {record.id}):")
        say.line(f"    {plot_looks(looks, path, title)}")


def _print_event(event: Mapping[str, Any], say: _Printer) -> None:
    evidence = event.get("evidence") or {}
    say.line(f"{event['from_state'] or '-'} → {event['to_state']}: {event['reason']}")
    gates: Sequence[Mapping[str, Any]] = evidence.get("gates") or ()
    if not gates or evidence.get("kind") != "step":
        return
    weight = evidence.get("weight_pct")
    step = evidence.get("step_index")
    say.line(
        f"  step {step + 1 if isinstance(step, int) else '-'} at {weight}% canary: "
        f"baseline {evidence.get('n_baseline')} / canary {evidence.get('n_canary')} requests, "
        f"verdict {str(evidence.get('verdict')).upper()}"
    )
    header = f"  {'gate':<14}{'test':<24}{'effect':>10}{'bounds':>22}{'margin':>9}"
    say.line(header + f"{'n base/canary':>16}  verdict")
    for gate in gates:
        bounds = f"{_num(gate.get('ci_low'))} to {_num(gate.get('ci_high'))}"
        role = "" if gate.get("blocking", True) else " (advisory)"
        say.line(
            f"  {gate['gate']:<14}{gate['test']:<24}{_num(gate.get('effect_size')):>10}"
            f"{bounds:>22}{_num(gate.get('threshold')):>9}"
            f"{str(gate['n_baseline']) + '/' + str(gate['n_canary']):>16}  {gate['verdict']}{role}"
        )
    if evidence.get("report"):
        report = Path(evidence["report"])
        deadline = time.monotonic() + 60  # the manager renders it beside its loop: seconds
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        late = "" if report.exists() else " (not written within 60 s)"
        say.line(f"  drift report (Evidently): {report}{late}")


def _print_history(manager: Manager) -> None:
    print(f"release history of {MODEL} in {ENVIRONMENT} (newest first)")
    print(
        f"{'id':>3}  {'kind':<10}{'version':>8}{'from':>6}  {'outcome':<12}"
        f"{'digest':<20}{'run id':<34}{'git':<10}{'config':<14}"
    )
    for release in manager.history(MODEL, ENVIRONMENT):
        print(
            f"{release.id or 0:>3}  {release.kind:<10}{'v' + release.version:>8}"
            f"{'v' + release.previous_version if release.previous_version else '-':>6}  "
            f"{release.outcome:<12}{(release.artifact_digest or '-')[:18]:<20}"
            f"{release.run_id or '-':<34}{(release.git_commit or '-')[:8]:<10}"
            f"{(release.config_hash or '-')[:12]:<14}"
        )


def _num(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _Printer:
    def __init__(self, started: float) -> None:
        self.started = started

    def head(self, number: str, text: str) -> None:
        print(f"\n[{number}] {text}  (t={time.monotonic() - self.started:.1f}s)", flush=True)

    def line(self, text: str) -> None:
        print(f"      {text}", flush=True)
