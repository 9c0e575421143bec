"""Every look's bounds are kept, thinned per step, and read back by the CLI (table, JSON, plot)
and the API: the real registry, the real store (SQLite and PostgreSQL for the thinning), real
HTTP on loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MODEL, DemoHome, LogWriter, logged, serving
from contract.sql.engine import open_engine
from monitors.results import GateResult
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.cli import main
from rollout.lifecycle import StepEvidence
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store.looks import LookStore

# A 10% step that stays undecided for a while: the looks accumulate.
WAITING = load_spec(
    {
        "strategy": {
            "canary": {"steps": [{"weight": 10, "min_requests": 50, "max_requests": 5000}]}
        },
        "analysis": {
            "gates": [
                {"error_rate": {"max_increase": 0.1}},
                {"latency": {"quantile": 0.5, "max_ratio": 2.0}},
            ]
        },
    }
)


def write(manager: Manager, rollout_id: str, arm: str, n: int, version: str) -> None:
    LogWriter(manager.engine).write(
        [logged(rollout_id, arm, version, 1, latency_ms=10.0 + (i % 7)) for i in range(n)]
    )


@pytest.fixture
def looking(home: DemoHome) -> Iterator[tuple[Manager, str]]:
    """A manager with a waiting 10% rollout that has had three looks at growing windows."""
    manager = Manager(home.settings)
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    rollout_id = manager.start(MODEL, v2, "prod", WAITING, actor="alice")
    for canary, baseline in ((10, 90), (20, 180), (30, 270)):
        write(manager, rollout_id, "canary", canary, v2)
        write(manager, rollout_id, "baseline", baseline, v1)
        assert manager.tick() == []  # undecided: waits
        assert manager.tick() == []  # nothing new: no second look kept
    yield manager, rollout_id
    manager.close()


def test_each_grown_window_keeps_one_look_with_every_gates_bounds(
    looking: tuple[Manager, str],
) -> None:
    manager, rollout_id = looking
    looks = manager.looks(rollout_id)
    assert [(look.step_index, look.seq) for look in looks] == [(0, 0), (0, 1), (0, 2)]
    assert [(look.n_canary, look.n_baseline) for look in looks] == [
        (10, 90),
        (30, 270),
        (60, 540),
    ]
    live = manager.status(MODEL, "prod").live
    assert live is not None
    for look in looks:
        gates = {gate.gate: gate for gate in look.gates}
        assert set(gates) == {"error_rate", "latency"}
        assert gates["error_rate"].threshold == pytest.approx(0.1)
        assert gates["latency"].threshold == pytest.approx(2.0)
        assert gates["error_rate"].verdict == "inconclusive"  # 0 errors in 60: not < 10% yet
        for gate in look.gates:
            assert gate.blocking
            assert gate.low is not None and gate.estimate is not None
            assert gate.low <= gate.estimate
            if gate.high is not None:
                assert gate.estimate <= gate.high
    # the newest kept look is the one status shows now
    newest = {gate.gate: gate for gate in looks[-1].gates}
    for result in live.gates:
        assert newest[result.gate].low == pytest.approx(result.ci_low)
        assert newest[result.gate].estimate == pytest.approx(result.effect_size)
    # the bounds narrow as the window grows
    widths = []
    for look in looks:
        errors = next(g for g in look.gates if g.gate == "error_rate")
        assert errors.high is not None and errors.low is not None
        widths.append(errors.high - errors.low)
    assert widths[0] > widths[1] > widths[2]


def test_a_full_step_drops_every_other_look_keeping_the_first_and_newest(
    store_url: str,
) -> None:
    engine = open_engine(store_url)
    store = LookStore(engine, max_per_step=4)
    gate = GateResult(
        gate="error_rate", test="t", statistic=0.0, p_value=None, effect_size=0.01,
        threshold=0.05, n_baseline=1, n_canary=1, verdict="inconclusive", reason="",
        ci_low=-0.02, ci_high=float("inf"),
    )  # fmt: skip
    seen = []
    for i in range(12):
        evidence = StepEvidence(
            verdict="inconclusive", gates=(gate,), n_baseline=9 * i, n_canary=i, step_index=1
        )
        store.record("r1", evidence, ts=float(i))
        kept = [look.seq for look in store.looks("r1", step_index=1)]
        assert len(kept) <= 4 and kept[0] == 0 and kept[-1] == i
        seen.append(kept)
    assert seen[4] == [0, 2, 4]  # the fifth look overfilled four: every other one dropped
    assert seen[-1] == [0, 8, 10, 11]
    (look,) = store.looks("r1", step_index=1)[-1:]
    assert (look.n_canary, look.n_baseline, look.ts) == (11, 99, 11.0)
    assert look.gates[0].high is None and look.gates[0].low == pytest.approx(-0.02)
    assert store.looks("r1", step_index=0) == [] and store.looks("other") == []
    engine.dispose()


def test_cli_prints_plots_and_dumps_the_looks(
    looking: tuple[Manager, str],
    home: DemoHome,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    manager, rollout_id = looking
    s = home.settings
    base = ["--home", str(s.home), "--registry-uri", s.registry_uri, "--store-url", s.store_url]
    assert main([*base, "looks", rollout_id]) == 0
    out = capsys.readouterr().out
    assert "step 1: 3 looks kept, 3 shown" in out
    assert "margins: error_rate 0.1, latency 2" in out
    verdicts = [gate.verdict[:4] for look in manager.looks(rollout_id) for gate in look.gates]
    assert len(verdicts) == 6 and out.count("inco") == verdicts.count("inco")
    assert out.count("pass") == verdicts.count("pass")
    assert main([*base, "looks", rollout_id, "--json"]) == 0
    dumped = json.loads(capsys.readouterr().out)
    assert [look["n_canary"] for look in dumped] == [10, 30, 60]
    plot = tmp_path / "looks.png"
    assert main([*base, "looks", rollout_id, "--plot", str(plot)]) == 0
    assert f"wrote {plot}" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert main([*base, "looks", rollout_id, "--step", "2"]) == 0
    assert "no looks kept yet" in capsys.readouterr().out
    assert main([*base, "looks", rollout_id, "--step", "0"]) == 2
    assert "expected a number of at least 1, got 0" in capsys.readouterr().err


def test_api_serves_the_looks_to_a_reader(looking: tuple[Manager, str]) -> None:
    manager, rollout_id = looking
    digest = hashlib.sha256(b"carol-secret").hexdigest()
    app = create_app(manager, parse_tokens(f"carol={digest}"))  # a viewer
    headers = {"Authorization": "Bearer carol-secret"}
    with serving(app) as client:
        reply = client.get(f"/v1/rollouts/{rollout_id}/looks", headers=headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["rollout_id"] == rollout_id
        assert [look["n_canary"] for look in body["looks"]] == [10, 30, 60]
        assert {gate["gate"] for gate in body["looks"][0]["gates"]} == {
            "error_rate",
            "latency",
        }
        step = client.get(f"/v1/rollouts/{rollout_id}/looks?step=1", headers=headers)
        assert step.json() == body
        assert (
            client.get(f"/v1/rollouts/{rollout_id}/looks?step=2", headers=headers).json()["looks"]
            == []
        )
        bad = client.get(f"/v1/rollouts/{rollout_id}/looks?step=0", headers=headers)
        assert bad.status_code == 422 and "step" in bad.text
        missing = client.get("/v1/rollouts/nope/looks", headers=headers)
        assert missing.status_code == 404 and "nope" in missing.json()["message"]
        assert client.get(f"/v1/rollouts/{rollout_id}/looks").status_code == 401


def test_the_judged_window_and_its_budget_survive_a_pause_and_resume(home: DemoHome) -> None:
    """One confidence sequence per gate over the rollout: after a pause and a resume the gates
    judge the same window, grown, not a new one (no second spending of alpha); only the
    step's floors count again from the resume."""
    manager = Manager(home.settings)
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager.start(MODEL, v1, "prod", actor="alice")
    spec = load_spec(
        {
            "strategy": {
                "canary": {"steps": [{"weight": 10, "min_requests": 50, "max_requests": 60}]}
            },
            "analysis": {"gates": [{"error_rate": {"max_increase": 0.1}}]},
        }
    )
    rollout_id = manager.start(MODEL, v2, "prod", spec, actor="alice")
    write(manager, rollout_id, "canary", 60, v2)
    write(manager, rollout_id, "baseline", 540, v1)
    (paused,) = manager.tick()
    assert paused.to_state == "paused"
    manager.resume(MODEL, "prod", actor="bob")
    write(manager, rollout_id, "canary", 20, v2)
    write(manager, rollout_id, "baseline", 180, v1)
    assert manager.tick() == []  # 20 requests in the restarted step: below its floor of 50
    after = manager.status(MODEL, "prod")
    assert after.live is not None and after.live.n_canary == 80  # 60 before the pause + 20
    assert after.live.requests_in_step == 20
    resumed = [e.ts for e in manager.events(rollout_id) if e.to_state == "progressing"][-1]
    assert after.live.window_start is not None and after.live.window_start < resumed
    (gate,) = after.live.gates
    assert gate.alpha == pytest.approx(spec.analysis.alpha)  # the whole budget, not a fresh one
    kept = manager.looks(rollout_id)
    assert [look.n_canary for look in kept][-2:] == [60, 80]  # one sequence across the pause
    manager.close()
