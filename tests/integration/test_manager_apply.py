"""``apply`` is idempotent and ``plan`` changes nothing (SQLite and PostgreSQL stores)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import MODEL, DemoHome
from contract.sql.schema import metadata
from rollout.cli import main
from rollout.declarative import apply, format_plan, plan
from rollout.errors import StateError
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.store.configs import ConfigStore


@pytest.fixture
def manager(home: DemoHome, store_url: str) -> Iterator[Manager]:
    manager = Manager(replace(home.settings, store_url=store_url))
    yield manager
    manager.close()


def declared(candidate: str, *, first_weight: int = 10, **extra: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "candidate": candidate,
        "environment": "prod",
        "strategy": {
            "canary": {
                "steps": [
                    {"weight": first_weight, "min_requests": 500, "min_duration": "1m",
                     "max_duration": "10m"},
                    {"weight": 100, "min_requests": 100, "max_duration": "5m"},
                ]
            }
        },
        "analysis": {"gates": ["error_rate"], "on_inconclusive": "rollback"},
        **extra,
    }  # fmt: skip


def row_counts(manager: Manager) -> dict[str, int]:
    with manager.engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
            for name, table in metadata.tables.items()
            if name != "manager_leases"
        }


def test_apply_twice_creates_nothing_new(manager: Manager, home: DemoHome) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    first = apply(manager, load_spec(declared(v1)), "alice")
    assert (first.action, first.config_version) == ("started", 1)
    assert first.message.endswith("with new config v1: succeeded")
    counts = row_counts(manager)
    again = apply(manager, load_spec(declared(v1)), "alice")
    assert (again.action, again.config_version, again.rollout_id) == (
        "unchanged",
        1,
        first.rollout_id,
    )
    assert row_counts(manager) == counts

    canary = apply(manager, load_spec(declared(v2)), "alice")
    assert (canary.action, canary.config_version) == ("started", 2)
    assert manager.rollout(str(canary.rollout_id)).state == "progressing"
    counts = row_counts(manager)
    assert apply(manager, load_spec(declared(v2)), "bob").action == "unchanged"
    assert row_counts(manager) == counts

    changed = load_spec(declared(v2, first_weight=20))
    with pytest.raises(StateError, match="never changed under its feet"):
        apply(manager, changed, "alice")
    assert row_counts(manager) == counts
    manager.abort(MODEL, "prod", "alice")
    restarted = apply(manager, changed, "alice")
    assert (restarted.action, restarted.config_version) == ("started", 3)
    versions = ConfigStore(manager.engine).versions("prod", MODEL)
    assert [(c.version, c.created_by) for c in versions] == [(3, "alice"), (2, "alice"),
                                                            (1, "alice")]  # fmt: skip


def test_plan_shows_steps_time_and_approval_and_changes_nothing(
    manager: Manager, home: DemoHome
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    apply(manager, load_spec(declared(v1)), "alice")
    counts = row_counts(manager)
    spec = load_spec(declared(v2, approval={"required": True, "timeout": "1h"}, watch="30m"))
    shown = plan(manager, spec)
    assert row_counts(manager) == counts
    assert shown.would == f"canary of v{v2} over v{v1} in prod"
    assert [(s.weight_pct, s.min_requests) for s in shown.steps] == [(10, 500), (100, 100)]
    assert (shown.least_time_s, shown.least_canary_requests) == (60.0, 600)
    assert shown.most_time_s == 600 + 300 + 3600
    assert (
        shown.approval == "required: someone other than who starts it, within 3600s (then rollback)"
    )
    assert shown.config_version is None and shown.requires == "staging"
    text = format_plan(shown)
    assert "step 1: 10% until 500 canary requests and 60s; at most 10m" in text
    assert "most time: 75m (every step at its max_duration, then the approval timeout)" in text
    assert "watch: 1800s after promotion (the previous version stays loaded" in text
    assert plan(manager, load_spec(declared(v2))).watch == "not watched"
    # the gate as it decides (the spec's error_rate, with its defaults), and what step 1 needs
    # to pass an equal candidate
    assert "gates: error_rate (max_ratio=1.5 max_increase=0.005)" in text
    assert shown.expected_requests is not None and 1_000 < shown.expected_requests < 60_000
    assert f"in about {shown.expected_requests:,} canary requests" in text

    blue_green = {"blue_green": {"preview": "5m", "preview_requests": 200, "bake": "10m"}}
    previewed = format_plan(plan(manager, load_spec({**declared(v2), "strategy": blue_green})))
    assert "step 1: 0% until 200 pinned requests (preview) and 5m" in previewed
    assert "step 2: 100% until 100 canary requests and 10m" in previewed

    unbounded = plan(manager, load_spec({**declared(v2), "analysis": {"gates": ["latency"]}}))
    assert unbounded.expected_requests is not None
    assert unbounded.expected_requests < shown.expected_requests  # latency decides sooner
    unjudged = format_plan(
        plan(manager, load_spec({**declared(v2), "analysis": {"gates": "none"}}))
    )
    assert "warning: gates: none" in unjudged and "no blocking gates" in unjudged
    assert unbounded.most_time_s is None
    assert unbounded.most_time_note.startswith("unbounded: with on_inconclusive pause")
    assert plan(manager, load_spec(declared(v1))).would.startswith("nothing: rollout")


def test_cli_apply_plan_and_watch(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    s = home.settings
    base = ["--home", str(s.home), "--registry-uri", s.registry_uri, "--store-url", s.store_url]
    v1 = home.versions["baseline"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
        "strategy: {linear: {steps: 4, min_requests: 50, max_duration: 1m}}\n"
    )
    assert main([*base, "plan", "-f", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"would: initial release of v{v1} in prod" in out
    assert "step 4: 100% until 50 canary requests" in out
    assert main([*base, "apply", "-f", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "with new config v1: succeeded" in out
    rollout_id = out.split()[2]
    assert main([*base, "report", rollout_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{rollout_id}: bc v{v1} in prod (linear), succeeded; started by ")
    assert "initial" in out.splitlines()[-2]  # the release table, then where the pictures are
    assert out.splitlines()[-1].startswith("drift report: none yet on the API; dashboard page")
    assert main([*base, "apply", "-f", str(spec)]) == 0
    assert capsys.readouterr().out.startswith("unchanged: rollout r-")
    assert main([*base, "status", MODEL, "--env", "prod", "--watch", "--interval", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{MODEL} in prod") == 1  # finished: printed once, then it returns
