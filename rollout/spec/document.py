"""The whole spec: :class:`RolloutSpec`, loaded from YAML, hashed, with errors that name paths.

- :func:`load_spec` accepts YAML/JSON text, a path or a dict and returns a frozen
  :class:`RolloutSpec`; every validation problem becomes one
  :class:`~rollout.errors.SpecError`, whose message (:func:`format_errors`) names the field
  path and what was expected, e.g. ``strategy.canary.steps[1].weight: must be 1..100, got 150``.
- :func:`config_hash` is sha256 over the canonical JSON of the validated spec (defaults filled
  in), so two spellings of the same spec hash the same.
- :func:`default_spec` is what ``rollout start`` uses without ``-f``: canary steps 10/50/100,
  the default gates (error_rate, latency, quality; output_drift advisory), pause when
  inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rollout.errors import SpecError
from rollout.lifecycle import OnApprovalTimeout, Step
from rollout.spec.fields import OptionalDuration, WatchDuration, _Model
from rollout.spec.gates import _GATE_TYPES, AnalysisSpec
from rollout.spec.strategies import _STRATEGY_TYPES, StrategySpec


class ApprovalSpec(_Model):
    """``approval: {required: true, timeout: 24h, on_timeout: rollback}``.

    ``required`` adds to the environment's own policy (either may require an approval);
    ``timeout`` (unset: wait for ever) and ``on_timeout`` override the environment's.
    """

    required: bool = False
    timeout_s: OptionalDuration = Field(default=None, alias="timeout")
    on_timeout: OnApprovalTimeout | None = None


class SmokeTest(_Model):
    """One request sent through the router to the pinned candidate before any traffic.

    ``payload`` (or ``payload_file``, a JSON file, relative to the manager's working
    directory) is an MLflow scoring body; the reply must have ``expect_status``, and on 200 a
    ``predictions`` list with one value per input row, each of the type the candidate's MLflow
    signature declares, equal to ``expect_predictions`` when given.
    """

    name: str | None = None
    payload_file: str | None = None
    payload: Any = None
    expect_status: int = 200
    expect_predictions: list[Any] | None = None

    @model_validator(mode="after")
    def _has_payload(self) -> SmokeTest:
        if self.payload_file is None and self.payload is None:
            raise ValueError("expected 'payload_file' or 'payload'")
        return self


class RolloutSpec(_Model):
    model: str | None = None
    candidate: str | None = None  # a version number ("7") or an alias ("@challenger")
    environment: str | None = None
    strategy: StrategySpec
    analysis: AnalysisSpec = AnalysisSpec()
    approval: ApprovalSpec = ApprovalSpec()
    smoke_tests: tuple[SmokeTest, ...] = ()
    # how long the promoted release is watched (``watch: 30m``; 0: not at all; unset: the
    # environment's ``watch``)
    watch_s: WatchDuration = Field(default=None, alias="watch")

    @field_validator("candidate", mode="before")
    @classmethod
    def _candidate(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return str(value)
        if isinstance(value, str) and (
            value.strip().isdigit() or re.fullmatch(r"@[\w.-]+", value.strip())
        ):
            return value.strip()
        raise ValueError(f"expected a version number or '@alias', got {value!r}")

    @field_validator("model", "environment")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    def steps(self) -> tuple[Step, ...]:
        """The canary steps the state machine walks (linear expanded)."""
        return self.strategy.steps()

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def config_hash(spec: RolloutSpec) -> str:
    """sha256 (hex) of the spec's canonical JSON."""
    return hashlib.sha256(spec.canonical_json().encode()).hexdigest()


DEFAULT_SPEC: dict[str, Any] = {
    "strategy": {
        "canary": {
            "steps": [
                {"weight": 10, "min_requests": 100},
                {"weight": 50, "min_requests": 200},
                {"weight": 100, "min_requests": 100},
            ]
        }
    },
    "analysis": {"alpha": 0.05, "on_inconclusive": "pause"},  # no gates listed: the defaults
}


def default_spec() -> RolloutSpec:
    return load_spec(DEFAULT_SPEC)


def load_spec(source: str | Path | Mapping[str, Any]) -> RolloutSpec:
    """Validate a spec given as a mapping, YAML/JSON text, or a path to a YAML file."""
    data: object
    where = ""
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        text = str(source)
        is_path = isinstance(source, Path) or (
            "\n" not in text and text.endswith((".yaml", ".yml", ".json"))
        )
        if is_path:
            path = Path(source)
            where = f"{path}: "
            try:
                text = path.read_text()
            except OSError as exc:
                raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(f"{where}not valid YAML{at}: {problem}") from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(where + format_errors(exc)) from None


_UNION_TAGS = frozenset(model.__name__ for model in (*_STRATEGY_TYPES, *_GATE_TYPES))


def format_errors(exc: ValidationError) -> str:
    """``path: problem`` per error, joined by ``; ``."""
    return "; ".join(_format_one(error) for error in exc.errors())


def _format_one(error: Mapping[str, Any]) -> str:
    path = _path(error["loc"])
    kind = error["type"]
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind.startswith("literal_error"):
        expected = error.get("ctx", {}).get("expected", "")
        message = f"expected {expected}, got {error.get('input')!r}"
    else:
        message = f"{message[0].lower()}{message[1:]}, got {error.get('input')!r}"
    return f"{path}: {message}" if path else message


def _path(loc: tuple[int | str, ...]) -> str:
    """``strategy.canary.steps[1].weight``: the YAML path (without the tags of the unions)."""
    out = ""
    for part in loc:
        if part in _UNION_TAGS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
