"""Rollout spec parsing: the README's example, defaults, linear expansion, errors with paths."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from monitors.names import DRIFT_METHODS, LOSS_METRICS
from rollout.errors import SpecError
from rollout.lifecycle import Step
from rollout.spec import (
    GATE_NAMES,
    STRATEGIES,
    BlueGreenStrategy,
    CanaryStrategy,
    ErrorRateEntry,
    ErrorRateGate,
    InputDriftEntry,
    LatencyEntry,
    LatencyGate,
    LinearStrategy,
    OutputDriftEntry,
    OutputDriftGate,
    QualityEntry,
    QualityGate,
    RolloutSpec,
    ShadowStrategy,
    config_hash,
    default_spec,
    load_spec,
    parse_duration,
)

README_EXAMPLE = """
model: fraud-detector
candidate: 7                  # a version, or an alias such as "@challenger"
environment: prod
strategy:
  canary:
    steps:
      - {weight: 5,  min_requests: 500, max_duration: 10m}
      - {weight: 25, min_requests: 2000}
      - {weight: 50}
    sticky_key: header:x-user-id
analysis:
  alpha: 0.05
  gates:
    - {error_rate: {max_increase: 0.005}}
    - {latency: {quantile: 0.95, max_ratio: 1.2}}
    - {output_drift: {method: auto, threshold: 0.1}}
    - {quality: {metric: accuracy, max_decrease: 0.01}}
  on_inconclusive: pause
approval: {required: true}
smoke_tests:
  - {payload_file: smoke/fraud.json, expect_status: 200}
"""


def test_design_example_parses() -> None:
    spec = load_spec(README_EXAMPLE)
    assert (spec.model, spec.candidate, spec.environment) == ("fraud-detector", "7", "prod")
    assert spec.steps() == (
        Step(weight_pct=5, min_requests=500, min_duration_s=0.0, max_duration_s=600.0),
        Step(weight_pct=25, min_requests=2000),
        Step(weight_pct=50),
    )
    assert spec.strategy.name == "canary"
    assert spec.strategy.sticky_key == "header:x-user-id"
    assert [g.name for g in spec.analysis.gates] == [
        "error_rate",
        "latency",
        "output_drift",
        "quality",
    ]
    assert spec.analysis.output_drift == OutputDriftGate(method="auto", threshold=0.1)
    assert spec.analysis.quality is not None
    assert spec.analysis.quality.min_labels == 50
    assert spec.approval.required is True
    assert spec.smoke_tests[0].payload_file == "smoke/fraud.json"


def test_load_from_path_and_dict_agree(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(README_EXAMPLE)
    from_path = load_spec(path)
    from_str_path = load_spec(str(path))
    assert from_path == from_str_path == load_spec(README_EXAMPLE)


def test_alias_candidate_is_kept() -> None:
    spec = load_spec({"candidate": "@challenger", "strategy": {"linear": {"steps": 2}}})
    assert spec.candidate == "@challenger"


def test_linear_expands_to_equal_steps() -> None:
    spec = load_spec(
        {"strategy": {"linear": {"steps": 4, "min_requests": 50, "min_duration": "30s"}}}
    )
    assert [s.weight_pct for s in spec.steps()] == [25, 50, 75, 100]
    assert {(s.min_requests, s.min_duration_s) for s in spec.steps()} == {(50, 30.0)}
    assert spec.strategy.name == "linear"


def test_shadow_is_a_mirror_step_then_optional_canary_steps() -> None:
    spec = load_spec(
        {
            "strategy": {
                "shadow": {
                    "fraction": 0.5,
                    "min_requests": 40,
                    "then": "canary",
                    "canary": {"steps": [{"weight": 20}, {"weight": 100}]},
                }
            }
        }
    )
    assert [(s.weight_pct, s.min_requests, s.shadow_fraction) for s in spec.steps()] == [
        (0, 40, 0.5),
        (20, 100, 0.0),
        (100, 100, 0.0),
    ]
    assert spec.strategy.name == "shadow"


def test_blue_green_is_a_preview_step_then_a_bake_step() -> None:
    spec = load_spec(
        {"strategy": {"blue_green": {"preview": "2m", "bake": "10m", "min_requests": 20}}}
    )
    assert [(s.weight_pct, s.min_requests, s.min_duration_s) for s in spec.steps()] == [
        (0, 0, 120.0),
        (100, 20, 600.0),
    ]
    assert spec.strategy.name == "blue_green"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_default_spec() -> None:
    spec = default_spec()
    assert [s.weight_pct for s in spec.steps()] == [10, 50, 100]
    assert spec.analysis.defaulted
    assert [g.name for g in spec.analysis.effective_gates] == [
        "error_rate",
        "latency",
        "output_drift",
        "quality",
    ]
    assert spec.analysis.on_inconclusive == "pause"


def test_a_spec_without_analysis_gets_the_default_gates_and_none_must_be_asked_for() -> None:
    spec = load_spec({"strategy": {"canary": {"steps": [{"weight": 20}]}}})
    assert [g.name for g in spec.analysis.effective_gates] == [
        "error_rate",
        "latency",
        "output_drift",
        "quality",
    ]
    canary = {"canary": {"steps": [{"weight": 20}]}}
    only_alpha = load_spec({"strategy": canary, "analysis": {"alpha": 0.01}})
    assert len(only_alpha.analysis.effective_gates) == 4
    none = load_spec({"strategy": canary, "analysis": {"gates": "none"}})
    assert none.analysis.effective_gates == ()
    assert none.analysis.no_gates
    with pytest.raises(SpecError):
        load_spec({"strategy": canary, "analysis": {"gates": "nothing"}})
    assert spec.approval.required is False


def test_config_hash_is_stable_across_spellings() -> None:
    a = load_spec({"strategy": {"canary": {"steps": [{"weight": 10, "min_duration": "1m"}]}}})
    b = load_spec(
        "strategy:\n  canary:\n    steps:\n"
        "      - {weight: 10, min_duration: 60, min_requests: 100}\n"
    )
    c = load_spec({"strategy": {"canary": {"steps": [{"weight": 20}]}}})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 64


def test_canonical_json_round_trips() -> None:
    spec = load_spec(README_EXAMPLE)
    again = RolloutSpec.model_validate_json(spec.canonical_json())
    assert again == spec
    assert config_hash(again) == config_hash(spec)


def test_bare_gate_names_take_defaults() -> None:
    spec = load_spec(
        {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["error_rate", "latency"]}}
    )
    assert spec.analysis.latency == LatencyGate(max_ratio=1.2)
    assert spec.analysis.error_rate == ErrorRateGate()
    assert spec.analysis.quality is None
    assert spec.analysis.output_drift is None


@pytest.mark.parametrize(
    ("strategy", "model"),
    [
        ({"canary": {"steps": [{"weight": 100}]}}, CanaryStrategy),
        ({"linear": {"steps": 2}}, LinearStrategy),
        ({"blue_green": {}}, BlueGreenStrategy),
        ({"shadow": {}}, ShadowStrategy),
    ],
)
def test_each_strategy_validates_to_its_own_model(strategy: dict[str, object], model: type) -> None:
    spec = load_spec({"strategy": strategy})
    assert type(spec.strategy) is model
    assert spec.strategy.name == next(iter(strategy))
    assert (spec.strategy.canary is not None) == (spec.strategy.name == "canary")
    assert (spec.strategy.shadow is not None) == (spec.strategy.name == "shadow")


def test_a_null_strategy_key_is_unset() -> None:
    spec = load_spec({"strategy": {"canary": None, "linear": {"steps": 2}, "shadow": None}})
    assert spec == load_spec({"strategy": {"linear": {"steps": 2}}})


def test_gate_entries_are_typed_and_dump_as_written() -> None:
    spec = load_spec(
        {
            "strategy": {"linear": {"steps": 2}},
            "analysis": {
                "gates": ["latency", {"error_rate": None}, {"quality": {"metric": "auc"}}]
            },
        }
    )
    assert [type(entry) for entry in spec.analysis.gates] == [
        LatencyEntry,
        ErrorRateEntry,
        QualityEntry,
    ]
    dumped = [entry.model_dump(mode="json", exclude_none=True) for entry in spec.analysis.gates]
    assert [list(entry) for entry in dumped] == [["latency"], ["error_rate"], ["quality"]]
    assert dumped[2]["quality"]["metric"] == "auc"


def test_each_union_model_is_named_by_its_one_field() -> None:
    strategies = (CanaryStrategy, LinearStrategy, BlueGreenStrategy, ShadowStrategy)
    gates = (ErrorRateEntry, LatencyEntry, OutputDriftEntry, QualityEntry, InputDriftEntry)
    for models, names in ((strategies, STRATEGIES), (gates, GATE_NAMES)):
        assert [model.name for model in models] == list(names)
        assert [list(model.model_fields) for model in models] == [[name] for name in names]


def test_drift_methods_are_the_monitors_list() -> None:
    assert get_args(OutputDriftGate.model_fields["method"].annotation) == DRIFT_METHODS


def test_quality_metrics_are_accuracy_auc_and_the_monitors_losses() -> None:
    metrics = get_args(QualityGate.model_fields["metric"].annotation)
    assert metrics == ("accuracy", "auc", *LOSS_METRICS)


def test_every_problem_at_once_with_yaml_paths() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(
            {
                "candidate": "v2",
                "strategy": {"canary": {"steps": [{"weight": 10}, {"weight": 150}]}},
                "analysis": {"alpha": 0.7, "gates": ["bogus", {"latency": {"quantile": 2}}]},
            }
        )
    assert str(info.value) == (
        "candidate: expected a version number or '@alias', got 'v2'; "
        "strategy.canary.steps[1].weight: must be 1..100, got 150; "
        "analysis.alpha: must be a significance level in (0, 0.5), got 0.7; "
        "analysis.gates[0]: unknown gate 'bogus'; expected one of error_rate, latency, "
        "output_drift, quality, input_drift; "
        "analysis.gates[1].latency.quantile: must be in (0, 1), got 2.0"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"strategy": {"canary": {"steps": [{"weight": 10}, {"weight": 150}]}}},
            "strategy.canary.steps[1].weight: must be 1..100, got 150",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 50}, {"weight": 20}]}}},
            "strategy.canary.steps: weights must increase",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 10, "min_duration": "10x"}]}}},
            "strategy.canary.steps[0].min_duration: expected a duration such as '30s'",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 10, "min_requests": -1}]}}},
            "strategy.canary.steps[0].min_requests: must be an integer >= 0, got -1",
        ),
        (
            {"strategy": {"canary": {"steps": []}}},
            "strategy.canary.steps: must list at least one step",
        ),
        ({"strategy": {"blue_green": {"bake": "soon"}}}, "strategy.blue_green.bake: expected a"),
        (
            {"strategy": {"canary": {"steps": [{"weight": 100}]}}, "watch": "31d"},
            "watch: at most 30 days (2592000s), got 2678400s",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 100}]}}, "watch": "-5m"},
            "watch: expected a duration such as '30s'",
        ),
        (
            {"strategy": {"shadow": {"then": "canary"}}},
            "strategy.shadow: then: canary needs the 'canary' steps",
        ),
        ({"strategy": {"shadow": {"fraction": 0}}}, "strategy.shadow.fraction: must be a share"),
        (
            {"strategy": {}},
            "strategy: expected exactly one of 'canary', 'linear', 'blue_green' or 'shadow'",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 10}]}, "linear": {"steps": 2}}},
            "strategy: expected exactly one of 'canary', 'linear', 'blue_green' or 'shadow', "
            "got canary and linear",
        ),
        (
            {"strategy": "canary"},
            "strategy: expected exactly one of 'canary', 'linear', 'blue_green' or 'shadow' as "
            "the key of a mapping, got 'canary'",
        ),
        (
            {"strategy": {"bogus": {}}},
            "strategy: unknown strategy 'bogus'; expected exactly one of 'canary'",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 150}]}, "colour": "red"}},
            "strategy.canary.steps[0].weight: must be 1..100, got 150; "
            "strategy.colour: unknown field",
        ),
        (
            {"strategy": {"canary": 5}},
            "strategy.canary: input should be a valid dictionary or instance of CanarySpec, got 5",
        ),
        (
            {
                "strategy": {
                    "shadow": {"then": "canary", "canary": {"steps": [{"weight": 200}]}},
                }
            },
            "strategy.shadow.canary.steps[0].weight: must be 1..100, got 200",
        ),
        ({}, "strategy: required field is missing"),
        (
            {"strategy": {"linear": {"steps": 0}}},
            "strategy.linear.steps: must be a number of steps",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "candidate": "v2"},
            "candidate: expected a version number or '@alias', got 'v2'",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"alpha": 0.7}},
            "analysis.alpha: must be a significance level in (0, 0.5), got 0.7",
        ),
        (
            {
                "strategy": {"linear": {"steps": 2}},
                "analysis": {"gates": [{"latency": {"quantile": 2}}]},
            },
            "analysis.gates[0].latency.quantile: must be in (0, 1), got 2",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["error_rate", "bogus"]}},
            "analysis.gates[1]: unknown gate 'bogus'; expected one of error_rate",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": ["latency", "latency"]}},
            "analysis.gates: gate 'latency' is listed twice",
        ),
        (
            {
                "strategy": {"linear": {"steps": 2}},
                "analysis": {"gates": [{"latency": {}, "error_rate": None}]},
            },
            "analysis.gates[0]: expected exactly one of error_rate, latency, output_drift, "
            "quality, input_drift, got latency and error_rate",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": [5]}},
            "analysis.gates[0]: expected a gate name or a one-key mapping such as "
            "{error_rate: {max_increase: 0.005}}, got 5",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"gates": [{"latency": 5}]}},
            "analysis.gates[0].latency: input should be a valid dictionary",
        ),
        (
            {
                "strategy": {"linear": {"steps": 2}},
                "analysis": {"gates": [{"output_drift": {"method": "magic"}}]},
            },
            "analysis.gates[0].output_drift.method: expected 'auto', 'ks', 'chi_square', 'psi', "
            "'wasserstein', 'jensen_shannon', 'anderson' or 'mean_shift', got 'magic'",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "analysis": {"on_inconclusive": "wait"}},
            "analysis.on_inconclusive: expected 'pause', 'extend' or 'rollback', got 'wait'",
        ),
        (
            {
                "strategy": {"linear": {"steps": 2}},
                "analysis": {"gates": [{"quality": {"metric": "f1"}}]},
            },
            "analysis.gates[0].quality.metric: expected 'accuracy', 'auc', 'log_loss', 'mae' "
            "or 'rmse', got 'f1'",
        ),
        (
            {"strategy": {"canary": {"steps": [{"weight": 10, "colour": "red"}]}}},
            "strategy.canary.steps[0].colour: unknown field",
        ),
        (
            {"strategy": {"linear": {"steps": 2}}, "smoke_tests": [{"expect_status": 200}]},
            "smoke_tests[0]: expected 'payload_file' or 'payload'",
        ),
    ],
)
def test_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert message in str(info.value)


def test_yaml_syntax_error_is_one_line() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("strategy: [\n")
    assert "not valid YAML at line" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match="expected a mapping at the top level, got list"):
        load_spec("- 1\n- 2\n")
