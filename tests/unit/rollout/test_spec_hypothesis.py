"""Property tests of the spec loader (:func:`rollout.spec.load_spec`), with hypothesis.

The contract: whatever document arrives (YAML or JSON text, a parsed mapping), ``load_spec``
either returns a :class:`~rollout.spec.RolloutSpec` or raises
:class:`~rollout.errors.SpecError` (an ``invalid_spec`` 422 at the API); nothing else escapes.
A valid spec round-trips: its canonical JSON, and YAML dumped from it, load to the same spec
with the same :func:`~rollout.spec.config_hash`.

Bounded: each property runs at most a few hundred examples (``max_examples``) with no
per-example deadline (a busy 2-core CI machine is slow, not wrong); the hostile inputs that
today escape as something else than ``SpecError`` are pinned below as explicit cases.
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rollout.errors import SpecError
from rollout.spec import RolloutSpec, config_hash, load_spec

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    derandomize=True,  # the same examples on every run: CI is repeatable
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- arbitrary documents -------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)

# The spec's own vocabulary, so random documents reach the validators past "unknown field".
KEYS = [
    "model", "candidate", "environment", "strategy", "analysis", "approval", "smoke_tests",
    "watch", "canary", "linear", "blue_green", "shadow", "steps", "weight", "min_requests",
    "min_duration", "max_duration", "max_requests", "sticky_key", "preview", "bake",
    "preview_requests", "gates", "alpha", "on_inconclusive", "slo", "error_rate", "latency",
    "quality", "output_drift", "input_drift", "max", "max_ms", "quantile", "max_increase",
    "max_ratio", "metric", "max_decrease", "method", "delta", "required", "timeout",
    "on_timeout", "payload", "payload_file", "expect_status", "expect_predictions", "name",
]  # fmt: skip
WORDS = [
    "10s", "1h30m", "250ms", "-5s", "1e400", "nan", "inf", "@champion", "7", "pause",
    "extend", "rollback", "none", "auto", "accuracy", "header:x-rollout-key", "", " ",
]  # fmt: skip
spec_values = st.recursive(
    scalars | st.sampled_from(WORDS) | st.integers(min_value=-3, max_value=200),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=40,
)
spec_documents = st.dictionaries(st.sampled_from(KEYS), spec_values, max_size=6)


def _loads_or_spec_error(source: Any) -> RolloutSpec | None:
    """``load_spec(source)``; None when it raised SpecError (anything else fails the test)."""
    try:
        spec = load_spec(source)
    except SpecError as exc:
        message = str(exc)
        assert message.strip(), "a SpecError must say what is wrong"
        return None
    assert isinstance(spec, RolloutSpec)
    return spec


@FUZZ
@given(json_values)
def test_any_mapping_or_value_is_a_spec_or_a_spec_error(value: Any) -> None:
    if isinstance(value, dict):
        _loads_or_spec_error(value)
    else:  # not a mapping: load_spec takes text, so give it the value as YAML
        _loads_or_spec_error(yaml.safe_dump(value) + "\n")


@FUZZ
@given(spec_documents)
def test_spec_shaped_documents_are_a_spec_or_a_spec_error(document: dict[str, Any]) -> None:
    _loads_or_spec_error(document)
    _loads_or_spec_error(yaml.safe_dump(document, allow_unicode=True) + "\n")
    text = json.dumps(document, allow_nan=True)
    _loads_or_spec_error(text + "\n")


yaml_alphabet = st.sampled_from(
    list(string.ascii_letters + string.digits + " \t\n:-[]{},&*!|>'\"#%@`?.~=<\\")
)


@FUZZ
@given(st.text(alphabet=yaml_alphabet, max_size=200))
@example("key: [unclosed\n")
@example("&a [*a]\n")
@example("!!python/object:os.system {}\n")
@example("- a\n- b\n")
@example("strategy: {canary: {steps: [{weight: 150}]}}\n")
def test_arbitrary_yaml_text_is_a_spec_or_a_spec_error(text: str) -> None:
    _loads_or_spec_error(text + "\n")  # the newline: text, never taken for a file name


# -- hostile documents that escape today (they belong to item 6 of issue 11) ----------------


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deeply_nested_yaml_is_a_spec_error(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    text = "strategy: " + opening * 5_000 + "1" + closing * 5_000 + "\n"
    with pytest.raises(SpecError) as raised:
        load_spec(text)
    assert len(str(raised.value)) < 1_000  # says what is wrong without echoing the document


def test_a_file_name_with_a_nul_byte_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="spec file"):
        load_spec("spec\x00.yaml")


def test_a_long_invalid_value_is_not_echoed_whole() -> None:
    """Errors name the field and show a short excerpt of a bad value, never all of it."""
    big = "x" * 100_000
    with pytest.raises(SpecError) as raised:
        load_spec({"strategy": {"canary": {"steps": [{"weight": 10}]}}, "watch": big})
    assert str(raised.value).startswith("watch: ")
    assert len(str(raised.value)) < 2_000


# -- valid specs round-trip -----------------------------------------------------------------

durations = st.integers(min_value=0, max_value=3_600).map(lambda s: f"{s}s") | st.integers(
    min_value=0, max_value=86_400
)


@st.composite
def canary_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    weights = sorted(draw(st.sets(st.integers(min_value=1, max_value=100), min_size=1, max_size=6)))
    steps = []
    for weight in weights:
        step: dict[str, Any] = {"weight": weight}
        if draw(st.booleans()):
            step["min_requests"] = draw(st.integers(min_value=0, max_value=100_000))
        if draw(st.booleans()):
            step["min_duration"] = draw(durations)
        steps.append(step)
    return steps


strategies = st.one_of(
    st.builds(lambda steps: {"canary": {"steps": steps}}, canary_steps()),
    st.builds(
        lambda n, r: {"linear": {"steps": n, "min_requests": r}},
        st.integers(min_value=1, max_value=100),
        st.integers(min_value=0, max_value=10_000),
    ),
    st.builds(
        lambda preview, bake: {"blue_green": {"preview": preview, "bake": bake}},
        durations,
        durations,
    ),
)
valid_specs = st.fixed_dictionaries(
    {"strategy": strategies},
    optional={
        "model": st.text(alphabet=string.ascii_lowercase + "-_", min_size=1, max_size=20),
        "candidate": st.integers(min_value=1, max_value=999)
        | st.from_regex(r"@[a-z][a-z0-9_.-]{0,15}", fullmatch=True),
        "environment": st.sampled_from(["dev", "staging", "prod"]),
        "analysis": st.fixed_dictionaries(
            {},
            optional={
                "alpha": st.floats(min_value=0.001, max_value=0.2),
                "on_inconclusive": st.sampled_from(["pause", "extend", "rollback"]),
                "gates": st.just("none"),
            },
        ),
        "approval": st.fixed_dictionaries(
            {"required": st.booleans()}, optional={"timeout": durations}
        ),
        "watch": st.integers(min_value=0, max_value=86_400).map(lambda s: f"{s}s"),
    },
)


@FUZZ
@given(valid_specs)
def test_valid_specs_load_and_round_trip(document: dict[str, Any]) -> None:
    spec = load_spec(document)
    again = load_spec(spec.canonical_json() + "\n")
    assert again == spec
    assert config_hash(again) == config_hash(spec)
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    from_yaml = load_spec(yaml.safe_dump(dumped, sort_keys=False) + "\n")
    assert from_yaml == spec
    assert config_hash(from_yaml) == config_hash(spec)
    # the steps the state machine walks are increasing weights ending where the spec says
    weights = [step.weight_pct for step in spec.steps()]
    assert weights == sorted(weights)
    assert all(0 <= w <= 100 and not math.isnan(w) for w in weights)
