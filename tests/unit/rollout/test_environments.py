"""Environments: order, default policies and the YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.environments import Environment, Environments, load_environments
from rollout.errors import SpecError
from rollout.settings import Settings
from rollout.spec import SloErrorRate, SloLatency, SloSpec


def test_default_order_and_policies() -> None:
    envs = Environments()
    assert envs.names == ("dev", "staging", "prod")
    assert [envs.previous(n) for n in ("dev", "staging", "prod", "sandbox")] == [
        None,
        "dev",
        "staging",
        None,
    ]
    assert envs.get("prod") == Environment(
        "prod", approval_required=True, distinct_approver=True
    )  # prod requires an approval by default (issue 11, separation of duties)
    assert envs.get("sandbox") == Environment("sandbox")


def test_prod_requires_an_approval_unless_its_file_says_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text("environments: [dev, prod, {name: qa}]\n")
    envs = load_environments(path)
    assert [envs.get(n).approval_required for n in ("dev", "prod", "qa")] == [False, True, False]
    path.write_text("environments: [dev, {name: prod, approval: {required: false}}]\n")
    assert not load_environments(path).get("prod").approval_required
    assert load_environments(path).get("prod").distinct_approver


def test_environments_file_refuses_aliases(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text("a: &x [dev]\nenvironments: *x\n")
    with pytest.raises(SpecError, match="aliases are not allowed"):
        load_environments(path)


def test_names_keep_the_default_policy_of_known_environments() -> None:
    envs = Environments.of(["qa", "prod"])
    assert envs.previous("prod") == "qa"
    assert envs.get("prod").distinct_approver


def test_file_sets_order_and_approval(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(
        "environments:\n  - dev\n  - name: prod\n"
        "    approval: {required: true, timeout: 2h, on_timeout: abort}\n"
        "    slo: {error_rate: {max: 0.01}, latency: {max_ms: 250}}\n"
        "    watch: 30m\n"
    )
    envs = load_environments(path)
    assert envs.names == ("dev", "prod")
    assert envs.get("prod") == Environment(
        "prod",
        approval_required=True,
        distinct_approver=True,
        approval_timeout_s=7200.0,
        on_approval_timeout="abort",
        slo=SloSpec(
            error_rate=SloErrorRate(max=0.01), latency=SloLatency(quantile=0.99, max_ms=250)
        ),
        watch_s=1800.0,
    )
    assert envs.get("dev").watch_s == 0.0  # not watched
    assert envs.get("dev").slo is None  # a spec without one: the default SLO
    settings = Settings.resolve(home=tmp_path)
    assert settings.environments_file == path
    assert settings.env()["ROLLOUT_ENVIRONMENTS_FILE"] == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("environments: [dev, dev]", "environments: environment 'dev' is listed twice"),
        (
            "environments: [{name: prod, approval: {on_timeout: later}}]",
            "environments[0].approval.on_timeout: expected 'rollback' or 'abort', got 'later'",
        ),
        ("[dev]", "expected a mapping with 'environments'"),
        (
            "environments: [{name: prod, watch: soon}]",
            "environments[0].watch: expected a duration such as '30s', '10m' or '1h', got 'soon'",
        ),
        (
            "environments: [{name: prod, slo: {error_rate: {max: 5}}}]",
            "environments[0].slo.error_rate.max: input should be less than 1, got 5",
        ),
    ],
)
def test_invalid_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_environments(path)


@pytest.mark.parametrize(
    ("spec_watch", "environment_watch", "watched_s"),
    [(None, 1800.0, 1800.0), ("5m", 1800.0, 300.0), (0, 1800.0, 0.0), (None, 0.0, 0.0)],
)
def test_the_spec_watch_overrides_the_environment(
    spec_watch: object, environment_watch: float, watched_s: float
) -> None:
    from rollout.spec import load_spec
    from rollout.store.records import RolloutRecord
    from rollout.stored import machine_state

    data: dict[str, object] = {"strategy": {"canary": {"steps": [{"weight": 100}]}}}
    if spec_watch is not None:
        data["watch"] = spec_watch
    record = RolloutRecord(
        id="r1",
        model="m",
        environment="prod",
        baseline_version="1",
        candidate_version="2",
        strategy="canary",
        state="promoting",
        spec=load_spec(data).canonical_json(),
        config_hash="x",
        step_index=0,
        step_started_at=None,
        started_by="alice",
        created_at=0.0,
        updated_at=0.0,
    )
    state = machine_state(record, Environment("prod", watch_s=environment_watch))
    assert state.watch_s == watched_s
