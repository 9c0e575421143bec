"""Write ``stored_specs.json``: spec inputs with the canonical JSON and config hash they had.

Rollouts store ``spec.canonical_json()`` and ``config_hash(spec)``, and ``rollout apply`` is
idempotent by that hash, so a change to the spec models must not change either for any spec
accepted before. This script was run once, on the spec models as they were before the
strategy and gates became discriminated unions (see the commit that adds the fixture);
``test_stored_specs.py`` checks the current models against what it wrote. Do not re-run it to
make that test pass: a difference is a changed config version for stored rollouts.

    PYTHONPATH=. python tests/unit/rollout/make_stored_specs.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from monitors.names import DRIFT_METHODS
from rollout.spec import DEFAULT_SPEC, config_hash, load_spec

FIXTURE = Path(__file__).with_name("stored_specs.json")

LINEAR_2: dict[str, Any] = {"linear": {"steps": 2}}

README_EXAMPLE_YAML = """
model: fraud-detector
candidate: 7
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

ALL_GATE_OPTIONS: list[Any] = [
    {
        "error_rate": {
            "max_increase": 0.01,
            "min_n": 500,
            "tau": 0.02,
            "sequential": True,
            "power": 0.9,
            "require_power": True,
        }
    },
    {
        "latency": {
            "quantile": 0.99,
            "max_ratio": 1.5,
            "min_n": 40,
            "tau": 0.15,
            "sequential": False,
            "power": 0.7,
            "require_power": False,
        }
    },
    {"output_drift": {"method": "psi", "threshold": 0.25, "min_n": 60, "tau": 0.3}},
    {
        "quality": {
            "metric": "auc",
            "max_decrease": 0.02,
            "max_increase": 0.1,
            "min_labels": 80,
            "tau": 0.05,
            "sequential": False,
            "power": 0.85,
            "require_power": True,
        }
    },
]

QUALITY_METRICS = ("accuracy", "auc", "log_loss", "mae", "rmse")


def cases() -> list[tuple[str, Any]]:
    """(name, input): a mapping for ``load_spec``, or YAML text."""
    out: list[tuple[str, Any]] = [
        ("default_spec", copy.deepcopy(DEFAULT_SPEC)),
        ("design_example_yaml", README_EXAMPLE_YAML),
        (
            "canary_all_options",
            {
                "model": "fraud-detector",
                "candidate": 7,
                "environment": "prod",
                "strategy": {
                    "canary": {
                        "steps": [
                            {"weight": 1, "min_requests": 0, "min_duration": "250ms"},
                            {"weight": 5, "min_requests": 500, "min_duration": "30s"},
                            {"weight": 25, "min_duration": "10m", "max_duration": "1h30m"},
                            {"weight": 50, "min_duration": 90, "max_duration": 12.5e3},
                            {"weight": 100, "min_requests": 1000, "min_duration": "1d"},
                        ],
                        "sticky_key": "header:x-user-id",
                    }
                },
            },
        ),
        ("canary_one_step", {"strategy": {"canary": {"steps": [{"weight": 100}]}}}),
        (
            "canary_durations_as_numbers",
            {
                "strategy": {
                    "canary": {
                        "steps": [
                            {"weight": 10, "min_duration": 60, "max_duration": 60},
                            {"weight": 20, "min_duration": "1h", "max_duration": "1h30m"},
                        ]
                    }
                }
            },
        ),
        (
            "linear_all_options",
            {
                "candidate": "@challenger",
                "strategy": {
                    "linear": {
                        "steps": 4,
                        "min_requests": 50,
                        "min_duration": "10m",
                        "max_duration": "1h",
                        "sticky_key": "cookie:session",
                    }
                },
            },
        ),
        ("linear_one_step", {"strategy": {"linear": {"steps": 1}}}),
        ("linear_three_steps_rounded", {"strategy": {"linear": {"steps": 3}}}),
        (
            "blue_green_all_options",
            {
                "model": "churn",
                "strategy": {
                    "blue_green": {
                        "preview": "5m",
                        "preview_requests": 200,
                        "bake": "1h30m",
                        "min_requests": 50,
                        "sticky_key": "header:x-tenant",
                    }
                },
            },
        ),
        ("blue_green_defaults", {"strategy": {"blue_green": {}}}),
        (
            "shadow_then_stop_all_options",
            {
                "strategy": {
                    "shadow": {
                        "fraction": 0.25,
                        "min_requests": 300,
                        "min_duration": "10m",
                        "max_duration": "2h",
                        "test": "mcnemar",
                        "max_disagreement": 0.1,
                        "then": "stop",
                        "sticky_key": "header:x-user-id",
                    }
                }
            },
        ),
        (
            "shadow_then_canary",
            {
                "strategy": {
                    "shadow": {
                        "fraction": 0.5,
                        "min_requests": 40,
                        "test": "wilcoxon",
                        "then": "canary",
                        "canary": {
                            "steps": [
                                {"weight": 20, "min_duration": "30s"},
                                {"weight": 100, "max_duration": "1h"},
                            ],
                            "sticky_key": "header:x-user-id",
                        },
                    }
                }
            },
        ),
        ("shadow_defaults", {"strategy": {"shadow": {}}}),
        ("shadow_disagreement", {"strategy": {"shadow": {"test": "disagreement"}}}),
        (
            "other_strategy_keys_null",
            {"strategy": {"canary": None, "linear": {"steps": 2}, "shadow": None}},
        ),
        (
            "every_gate_every_option",
            {
                "strategy": LINEAR_2,
                "analysis": {
                    "alpha": 0.01,
                    "gates": ALL_GATE_OPTIONS,
                    "on_inconclusive": "extend",
                    "correction": "none",
                    "sequential": False,
                },
            },
        ),
        (
            "bare_gate_names",
            {
                "strategy": LINEAR_2,
                "analysis": {"gates": ["error_rate", "latency", "output_drift", "quality"]},
            },
        ),
        (
            "bare_and_mapped_gates_in_another_order",
            {
                "strategy": LINEAR_2,
                "analysis": {
                    "gates": [
                        "quality",
                        {"latency": None},
                        {"output_drift": {}},
                        {"error_rate": {"max_increase": 0.0}},
                    ],
                    "on_inconclusive": "rollback",
                },
            },
        ),
        ("no_gates", {"strategy": LINEAR_2, "analysis": {"gates": []}}),
        ("empty_analysis_and_approval", {"strategy": LINEAR_2, "analysis": {}, "approval": {}}),
        (
            "approval_rollback",
            {
                "strategy": LINEAR_2,
                "approval": {"required": True, "timeout": "24h", "on_timeout": "rollback"},
            },
        ),
        (
            "approval_abort",
            {
                "strategy": LINEAR_2,
                "approval": {"required": False, "timeout": 3600, "on_timeout": "abort"},
            },
        ),
        (
            "smoke_tests",
            {
                "strategy": LINEAR_2,
                "smoke_tests": [
                    {"payload_file": "smoke/fraud.json"},
                    {
                        "name": "two rows",
                        "payload": {
                            "dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]}
                        },
                        "expect_status": 200,
                        "expect_predictions": [0, 1],
                    },
                    {"name": "bad input", "payload": {"inputs": "nonsense"}, "expect_status": 400},
                ],
            },
        ),
        (
            "model_candidate_environment_strings",
            {"model": "m", "candidate": " 12 ", "environment": "staging", "strategy": LINEAR_2},
        ),
        ("candidate_string_number", {"candidate": "7", "strategy": LINEAR_2}),
        ("candidate_alias_with_dots", {"candidate": "@champion.v-2", "strategy": LINEAR_2}),
    ]
    out += [
        (
            f"drift_method_{method}",
            {
                "strategy": LINEAR_2,
                "analysis": {"gates": [{"output_drift": {"method": method}}]},
            },
        )
        for method in DRIFT_METHODS
    ]
    out += [
        (
            f"quality_metric_{metric}",
            {"strategy": LINEAR_2, "analysis": {"gates": [{"quality": {"metric": metric}}]}},
        )
        for metric in QUALITY_METRICS
    ]
    return out


def main() -> None:
    records = []
    for name, source in cases():
        spec = load_spec(copy.deepcopy(source))
        records.append(
            {
                "name": name,
                "input": source,
                "canonical_json": spec.canonical_json(),
                "config_hash": config_hash(spec),
            }
        )
    FIXTURE.write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} specs to {FIXTURE}")


if __name__ == "__main__":
    main()
