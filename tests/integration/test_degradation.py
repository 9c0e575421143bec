"""Every serving release monitored, rollout or not (rollout/degradation.py), on the real store
(SQLite and PostgreSQL) and a real registry: hourly windows kept, the change detectors warm up
on the release's first windows, an A/A day raises no alarm, a release whose error rate
doubles later is caught within a few windows, the alarm is a webhook and, with
``on_degradation: rollback``, traffic returns to the previous release by itself; the command
shows the windows and the alarm."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select

from conftest import MODEL, DemoHome, LogWriter, clear_of_a_closing, logged, wait_until
from contract.sql.schema import input_references, predictions
from rollout.degradation import REFERENCE_MAX_WINDOWS
from rollout.environments import Environment
from rollout.manager import Manager
from rollout.spec import load_spec

HOUR = 3600.0
PER_HOUR = 1_500
WAITS = load_spec({"strategy": {"canary": {"steps": [{"weight": 10, "min_requests": 10**6}]}}})


def serving_v2(home: DemoHome, store_url: str, on_degradation: str) -> Manager:
    settings = replace(
        home.settings, store_url=store_url, webhook_urls=("http://127.0.0.1:9/hook",)
    )
    prod = Environment("prod", on_degradation=on_degradation)  # type: ignore[arg-type]
    manager = Manager(settings, environments=[prod])
    manager.start(MODEL, home.versions["baseline"], "prod", actor="alice")
    manager.start(MODEL, home.versions["better"], "prod", WAITS, actor="alice")
    manager.promote(MODEL, "prod", actor="bob")
    return manager


def traffic(
    manager: Manager,
    version: str,
    now: float,
    error_rates: list[float],
    shifts: list[float] | None = None,
) -> None:
    """One window of PER_HOUR requests per hour, ending with the hour before ``now``'s: the
    errors spread evenly (each hour's ``error_rates`` share), latencies 8-14 ms; with
    ``shifts``, two normal features per request, shifted by the hour's shift."""
    closed = math.floor((now - 60.0) / HOUR) * HOUR
    first = closed - len(error_rates) * HOUR
    rng = np.random.default_rng(0)
    records = []
    for hour, rate in enumerate(error_rates):
        failing = set(rng.choice(PER_HOUR, size=round(rate * PER_HOUR), replace=False).tolist())
        for i in range(PER_HOUR):
            record = logged(
                "",
                "baseline",
                version,
                1,
                latency_ms=8.0 + (i % 7),
                error="boom" if i in failing else None,
            )
            record = replace(record, rollout_id=None, ts=first + hour * HOUR + i + 0.5)
            if shifts is not None:
                x = rng.normal(shifts[hour], 1.0, 2)
                record = replace(record, features=json.dumps([{"a": x[0], "b": x[1]}]))
            records.append(record)
    LogWriter(manager.engine).write(records)


def test_an_a_a_day_raises_nothing_and_a_later_doubling_is_caught(
    home: DemoHome, store_url: str
) -> None:
    manager = serving_v2(home, store_url, on_degradation="alert")
    v2 = home.versions["better"]
    now = time.time()
    traffic(manager, v2, now, [0.01] * REFERENCE_MAX_WINDOWS)
    assert manager.watch_releases(now) == []
    kept = [w for w in manager.kept_windows(MODEL, "prod", limit=100) if w.version == v2]
    assert len(kept) == REFERENCE_MAX_WINDOWS and {w.requests for w in kept} == {PER_HOUR}
    assert {w.errors for w in kept} == {15}
    # the reference: the first 20 windows (30,000 requests >= 30,000); then judged
    assert [("warming_up" in (w.detectors or {})) for w in kept[:21]] == [True] * 19 + [False] * 2
    streams = kept[-1].detectors["streams"]  # type: ignore[index]
    assert set(streams) == {"errors", "latency"}  # no labels: no quality stream
    assert 0.01 < streams["errors"]["p0"] < 0.02  # the upper bound of 1%, times 1.5
    assert manager.watch_releases(now) == []  # nothing new: nothing kept twice
    assert len(manager.kept_windows(MODEL, "prod", limit=100)) == len(kept)

    later = now + 6 * HOUR
    traffic(manager, v2, later, [0.01, 0.01] + [0.03] * 4)  # triple from the third hour
    # the second and the fourth tripled hours: the detector restarts after an alarm
    alarm, again = manager.watch_releases(later)
    closed = math.floor((later - 60.0) / HOUR) * HOUR
    assert (alarm.start, again.start) == (closed - 3 * HOUR, closed - HOUR)
    for raised in (alarm, again):
        assert (raised.version, raised.stream, raised.rolled_back) == (v2, "errors", False)
    assert alarm.reason.startswith(f"{MODEL} v{v2} in prod degraded: failed requests: bad rate")
    hooks = [d for d in manager.webhooks.deliveries() if d.event == "degraded"]
    assert sorted(json.loads(h.payload)["reason"] for h in hooks) == sorted(
        [alarm.reason, again.reason]
    )
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.baseline_version == v2  # alert only
    assert [d.alarm for d in manager.degradations(MODEL, "prod")] == [again.reason, alarm.reason]
    manager.close()


def test_retention_prunes_old_windows_but_keeps_what_the_detectors_need(
    home: DemoHome, store_url: str
) -> None:
    """``ReleaseMonitor.prune`` (each retention pass, for an environment with
    ``retention.days``): a warming version keeps every window; once it is judged, its windows
    older than the retention go, except its newest (the detectors' state), its first (the inputs'
    reference) and those that raised an alarm; judging goes on as before."""
    manager = serving_v2(home, store_url, on_degradation="alert")
    v2 = home.versions["better"]
    monitor = manager.release_monitor
    now = time.time()
    early = now - 14 * HOUR
    traffic(manager, v2, early, [0.01] * 10)
    assert manager.watch_releases(early) == []
    assert monitor.prune(early + 30 * HOUR, {"prod": 60.0}) == 0  # warming: all kept
    traffic(manager, v2, now, [0.01] * 14)
    later = now + 6 * HOUR
    traffic(manager, v2, later, [0.01, 0.01] + [0.03] * 4)
    assert len(manager.watch_releases(now) + manager.watch_releases(later)) == 2
    before = manager.kept_windows(MODEL, "prod", limit=100)
    # 14 empty windows (the first pass starts 24 back), 24 with requests, 6 later
    assert len(before) == 44 and "streams" in (before[-1].detectors or {})

    assert monitor.prune(later, {}) == 0  # no environment with retention.days: nothing goes
    closed = math.floor((later - 60.0) / HOUR) * HOUR  # the newest window's end
    first_38 = later - (closed - 6 * HOUR + 1.0)  # a retention ending just after the 38th window
    assert monitor.prune(later, {"prod": first_38}) == 38 - 1  # all but the inputs' first
    assert monitor.prune(later, {"prod": 60.0}, limit=2) == 2  # at most limit a pass
    # of the 6 newer windows, the 4th and the 6th raised alarms, and the 6th is the newest
    assert monitor.prune(later, {"prod": 60.0}) == 6 - 2 - 2
    assert monitor.prune(later, {"prod": 60.0}) == 0
    after = manager.kept_windows(MODEL, "prod", limit=100)
    assert [w.start for w in after] == [
        before[14].start, before[-3].start, before[-1].start
    ]  # fmt: skip
    assert after[1].alarm is not None and after[2].alarm is not None
    assert after[-1].detectors == before[-1].detectors

    # Judging goes on from the newest window's state, as without the prune: the restarted
    # detector catches the second tripled hour (as it did after the first alarm).
    latest = later + 3 * HOUR
    traffic(manager, v2, latest, [0.01, 0.03, 0.03])
    (alarm,) = manager.watch_releases(latest)
    assert (alarm.version, alarm.stream, alarm.start) == (v2, "errors", closed + 2 * HOUR)
    assert len(manager.kept_windows(MODEL, "prod", limit=100)) == 6
    manager.close()


def test_on_degradation_rollback_returns_to_the_previous_release(
    home: DemoHome, tmp_path: object
) -> None:
    manager = serving_v2(home, home.settings.store_url, on_degradation="rollback")
    v1, v2 = home.versions["baseline"], home.versions["better"]
    now = time.time()
    traffic(manager, v2, now, [0.01] * 20 + [0.05] * 4)
    (alarm,) = manager.watch_releases(now)
    assert alarm.rolled_back and alarm.version == v2
    back = manager.history(MODEL, "prod")[0]
    assert (back.kind, back.version, back.started_by) == ("rollback", v1, "monitor")
    plan = manager.plans.get("prod", MODEL)
    assert plan is not None and plan.baseline_version == v1

    shown = subprocess.run(
        [sys.executable, "-m", "rollout", "--home", str(home.settings.home),
         "--registry-uri", home.settings.registry_uri,
         "--store-url", home.settings.store_url, "monitor", MODEL, "--env", "prod"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "alarm" in shown.stdout and "failed requests" in shown.stdout
    manager.close()


def test_each_window_s_inputs_against_the_first_window(home: DemoHome) -> None:
    """No training reference for v2: its first window becomes one, and says so; the later
    windows' inputs are compared with it, drift found when the features move."""
    manager = serving_v2(home, home.settings.store_url, on_degradation="alert")
    v2 = home.versions["better"]
    now = time.time()
    traffic(manager, v2, now, [0.0] * 6, shifts=[0.0] * 4 + [1.0] * 2)
    manager.watch_releases(now)
    kept = [
        w.summary["input_drift"] for w in manager.kept_windows(MODEL, "prod") if w.version == v2
    ]
    assert len(kept) == REFERENCE_MAX_WINDOWS and kept[0] == {
        "rows": 0,
        "why": f"no training reference for v{v2}: no dataset logged with mlflow.log_input; no "
        "readable reference.parquet or reference.csv beside the model; its first window has "
        "too few feature rows",
    }  # the first windows had no requests
    first, same, moved = kept[-6], kept[-3], kept[-1]
    assert first["is_reference"] and first["source"].startswith(
        f"its first window (no training reference for v{v2}: no dataset logged"
    )
    assert (same["features"], same["drifted"], same["rows"]) == (2, 0, PER_HOUR)
    assert (moved["drifted"], moved["verdict"]) == (2, "fail")
    assert [name for name, *_ in moved["most"]] in (["a", "b"], ["b", "a"])
    manager.close()

    # Retention prunes every prediction row, and a new manager (nothing in memory) reads the
    # first window's rows from where they were kept: the same comparison goes on.
    with manager.engine.begin() as conn:
        assert conn.execute(delete(predictions)).rowcount == 6 * PER_HOUR
        (kept_rows,) = conn.execute(select(input_references.c.window_start)).scalars().all()
    assert kept_rows == kept_windows_start(manager, v2)[-6]
    again = Manager(manager.settings, environments=manager.environments.ordered)
    later = now + 2 * HOUR
    traffic(again, v2, later, [0.0] * 2, shifts=[0.0, 1.0])
    again.watch_releases(later)
    same, moved = [
        w.summary["input_drift"] for w in again.kept_windows(MODEL, "prod") if w.version == v2
    ][-2:]
    assert same["source"] == first["source"] and "is_reference" not in same
    assert (same["features"], same["drifted"], same["rows"]) == (2, 0, PER_HOUR)
    assert (moved["drifted"], moved["verdict"]) == (2, "fail")
    again.close()


def kept_windows_start(manager: Manager, version: str) -> list[float]:
    return [w.start for w in manager.kept_windows(MODEL, "prod") if w.version == version]


def test_the_manager_process_rolls_a_degraded_release_back_by_itself(
    home: DemoHome, tmp_path: Path
) -> None:
    """``rollout manager`` (a real process, environments.yaml with ``on_degradation:
    rollback``) keeps the windows and returns traffic to v1 without anyone asking."""
    manager = serving_v2(home, home.settings.store_url, on_degradation="alert")
    v1, v2 = home.versions["baseline"], home.versions["better"]
    # the process reads the windows by the real clock: one more closing would shift them
    traffic(manager, v2, clear_of_a_closing(120.0), [0.01] * 20 + [0.05] * 4)
    environments = tmp_path / "environments.yaml"
    environments.write_text(
        "environments:\n  - {name: prod, monitor: {window: 1h, on_degradation: rollback}}\n"
    )
    env = {
        **os.environ,
        **home.settings.env(),
        "ROLLOUT_ENVIRONMENTS_FILE": str(environments),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollout", "manager", "--interval", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        back = wait_until(
            lambda: manager.history(MODEL, "prod")[0],
            "the monitor's rollback",
            timeout_s=90,
            until=lambda release: release.kind == "rollback",
        )
        assert (back.version, back.started_by) == (v1, "monitor")
        (alarm,) = manager.degradations(MODEL, "prod")
        assert f"{MODEL} v{v2} in prod degraded: failed requests" in (alarm.alarm or "")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    manager.close()


@pytest.mark.parametrize("window", ["30s", "2d", "often"])
def test_a_bad_monitor_window_is_refused(window: str) -> None:
    from rollout.environments import parse_environments
    from rollout.errors import SpecError

    with pytest.raises(SpecError, match=r"monitor\.window"):
        parse_environments({"environments": [{"name": "prod", "monitor": {"window": window}}]})
