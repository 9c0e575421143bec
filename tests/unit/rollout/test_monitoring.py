"""``rollout monitor``: windows of the prediction log, on SQLite and PostgreSQL, checked against
numpy on the same rows; the command's text and JSON from a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import LogWriter
from contract.records import Feedback, PredictionRecord
from contract.sql.engine import open_engine
from rollout.store.monitoring import MAX_WINDOWS, Monitoring
from rollout.summary import LATENCY_EDGES

HOUR = 3600.0
NOW = 1_800_000_000.0 + 1800.0  # half past an hour


def served(
    n: int,
    *,
    hour_ago: int,
    version: str,
    arm: str = "baseline",
    seed: int = 0,
    fail_every: int = 0,
) -> list[PredictionRecord]:
    rng = np.random.default_rng(seed)
    start = (NOW // HOUR - hour_ago) * HOUR
    span = min(HOUR, NOW - start) - 2  # the current hour only up to now
    latencies = rng.lognormal(2.0, 0.5, n)
    outputs = rng.integers(0, 2, n)
    return [
        PredictionRecord(
            request_id=f"{version}-{arm}-{hour_ago}-{i}",
            ts=start + 1 + i * span / n,
            environment="prod",
            model="bc",
            version=version,
            arm=arm,
            rollout_id=None,
            plan_generation=1,
            features=None,
            output=None if fail_every and i % fail_every == 0 else json.dumps([int(outputs[i])]),
            latency_ms=float(latencies[i]),
            error="boom" if fail_every and i % fail_every == 0 else None,
            status_code=500 if fail_every and i % fail_every == 0 else 200,
        )
        for i in range(n)
    ]


def upper_edge(values: list[float], q: float) -> float:
    """The upper edge of the latency bin holding the q-quantile (what the view reports)."""
    index = np.searchsorted(LATENCY_EDGES[1:-1], np.asarray(values), side="left")
    counts = np.bincount(index, minlength=LATENCY_EDGES.size - 1)
    at = int(np.searchsorted(np.cumsum(counts), q * len(values), side="left"))
    return float(LATENCY_EDGES[at + 1])


def test_windows_count_each_version_and_match_numpy(store_url: str) -> None:
    engine = open_engine(store_url)
    writer = LogWriter(engine)
    v1_old = served(400, hour_ago=2, version="1")
    v1 = served(300, hour_ago=0, version="1", seed=1)
    v2 = served(200, hour_ago=0, version="2", arm="canary", seed=2, fail_every=10)
    failover = [  # v1 answered v2's failed requests
        PredictionRecord(**{**r.__dict__, "request_id": f"fo-{r.request_id}", "version": "1",
                            "arm": "failover", "output": "[0]", "error": None, "status_code": 200})
        for r in v2 if r.error is not None
    ]  # fmt: skip
    mirrored = [
        PredictionRecord(**{**r.__dict__, "request_id": f"sh-{r.request_id}", "arm": "shadow"})
        for r in v1[:50]
    ]
    elsewhere = [PredictionRecord(**{**r.__dict__, "request_id": f"dev-{r.request_id}",
                                     "environment": "dev"}) for r in v1]  # fmt: skip
    writer.write(v1_old + v1 + v2 + failover + mirrored + elsewhere)
    labelled = [r for r in v2 if r.error is None][:40]
    writer.add_feedback([Feedback(r.request_id, [1], ts=NOW) for r in labelled])

    windows = Monitoring(engine).windows("bc", "prod", NOW, hours=3)
    assert [w.start for w in windows] == [(NOW // HOUR - 2) * HOUR, (NOW // HOUR) * HOUR]
    old, current = windows
    assert [v.version for v in old.versions] == ["1"] and old.requests == 400
    first, second = current.versions
    assert (first.version, first.requests, first.errors, first.failovers) == ("1", 300, 0, 20)
    assert (second.version, second.requests, second.errors) == ("2", 200, 20)
    assert second.error_rate == pytest.approx(0.1)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert first.latency_ms[name] == upper_edge([r.latency_ms for r in v1], q)
        assert second.latency_ms[name] == upper_edge([r.latency_ms for r in v2], q)
        exact = float(np.quantile([r.latency_ms for r in v1], q, method="inverted_cdf"))
        assert exact <= first.latency_ms[name] <= exact * 1.0011  # within its bin
    ones = sum(r.output == "[1]" for r in v1)
    assert first.outputs == pytest.approx({"1": ones / 300, "0": 1 - ones / 300})
    assert first.output_mean == pytest.approx(ones / 300)
    right = sum(r.output == "[1]" for r in labelled)
    assert (second.labelled, second.correct_share) == (40, pytest.approx(right / 40))
    assert Monitoring(engine).windows("bc", "staging", NOW) == []
    engine.dispose()


def test_a_view_too_long_is_refused_not_read(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(ValueError, match=f"more than {MAX_WINDOWS} windows"):
        Monitoring(engine).windows("bc", "prod", NOW, hours=24 * 365, window_s=60)
    with pytest.raises(ValueError, match="need hours > 0"):
        Monitoring(engine).windows("bc", "prod", NOW, hours=float("nan"))


def test_the_command_prints_windows_as_text_and_json(tmp_path: Path) -> None:
    import time

    store = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_engine(store)
    middle = time.time() // 3600 * 3600 - 1800  # of the hour before this one: one window
    rows = served(100, hour_ago=0, version="3")
    LogWriter(engine).write(
        [PredictionRecord(**{**r.__dict__, "ts": middle + i * 0.1}) for i, r in enumerate(rows)]
    )
    engine.dispose()
    base = [sys.executable, "-m", "rollout", "--home", str(tmp_path), "--store-url", store]
    base += ["--registry-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "monitor", "bc"]
    shown = subprocess.run(
        [*base, "--env", "prod", "--hours", "2"], capture_output=True, text=True, check=True
    ).stdout
    assert "bc in prod: windows of 3600 s over the last 2 h" in shown
    assert "v3: 100 requests; 0.00% failed; p50" in shown
    data = json.loads(
        subprocess.run(
            [*base, "--env", "prod", "--window", "30m", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert sum(w["requests"] for w in data["windows"]) == 100
    assert {v["version"] for w in data["windows"] for v in w["versions"]} == {"3"}
    assert (data["detectors"], data["alarms"]) == (None, [])  # no manager has kept a window
    bad = subprocess.run(
        [*base, "--env", "prod", "--window", "soon"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--window: expected a duration" in bad.stderr
