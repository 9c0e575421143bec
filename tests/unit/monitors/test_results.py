"""GateResult: frozen, validated, JSON-safe."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from monitors.results import GateResult


def _result(**overrides: object) -> GateResult:
    fields: dict[str, object] = {
        "gate": "error_rate",
        "test": "two_proportion_z",
        "statistic": 2.5,
        "p_value": 0.006,
        "effect_size": 0.011,
        "threshold": 0.05,
        "n_baseline": 1000,
        "n_canary": 900,
        "verdict": "fail",
        "reason": "canary error rate 2.10% vs baseline 1.00%",
        "details": {"baseline_rate": 0.01, "canary_rate": 0.021},
    }
    fields.update(overrides)
    return GateResult(**fields)  # type: ignore[arg-type]


def test_to_dict_holds_every_field_as_plain_json_values() -> None:
    result = _result()

    assert result.to_dict() == {
        "gate": "error_rate",
        "test": "two_proportion_z",
        "statistic": 2.5,
        "p_value": 0.006,
        "effect_size": 0.011,
        "threshold": 0.05,
        "n_baseline": 1000,
        "n_canary": 900,
        "verdict": "fail",
        "reason": "canary error rate 2.10% vs baseline 1.00%",
        "details": {"baseline_rate": 0.01, "canary_rate": 0.021},
        "ci_low": None,
        "ci_high": None,
        "blocking": True,
        "alpha": None,
    }


def test_to_dict_turns_nan_and_inf_into_none() -> None:
    result = _result(
        statistic=math.nan,
        p_value=None,
        effect_size=math.inf,
        details={"ratio": -math.inf, "hl": np.float64(3.0)},
    )

    as_dict = result.to_dict()

    assert as_dict["statistic"] is None
    assert as_dict["p_value"] is None
    assert as_dict["effect_size"] is None
    assert as_dict["details"] == {"ratio": None, "hl": 3.0}
    json.dumps(as_dict, allow_nan=False)  # raises on NaN / inf


def test_numpy_numbers_are_stored_as_python_floats() -> None:
    result = _result(statistic=np.float64(1.5), p_value=np.float32(0.5), details={"x": np.int64(3)})

    assert type(result.statistic) is float
    assert type(result.p_value) is float
    assert type(result.details["x"]) is float


def test_result_is_frozen_and_details_are_copied() -> None:
    details = {"baseline_rate": 0.01}
    result = _result(details=details)

    details["baseline_rate"] = 0.5

    assert result.details == {"baseline_rate": 0.01}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = "pass"  # type: ignore[misc]


def test_result_is_hashable_and_compares_by_value() -> None:
    assert _result() == _result()
    assert hash(_result()) == hash(_result())


def test_default_details_are_empty() -> None:
    fields = {k: v for k, v in _result().__dict__.items() if k != "details"}

    assert GateResult(**fields).details == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"n_baseline": -1}, "n_baseline"),
        ({"n_canary": 1.5}, "n_canary"),
        ({"n_canary": True}, "n_canary"),
    ],
)
def test_invalid_fields_raise(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _result(**overrides)


def test_unmeasured_result_has_no_numbers_but_keeps_its_verdict() -> None:
    result = GateResult.unmeasured("artifact_digest", "sha256", "fail", "digest changed")
    assert (result.verdict, result.test, result.reason) == ("fail", "sha256", "digest changed")
    assert result.p_value is None and (result.n_baseline, result.n_canary) == (0, 0)
    data = result.to_dict()
    assert data["statistic"] is None and data["effect_size"] is None
