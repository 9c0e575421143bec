"""The rollout spec (YAML, see DESIGN.md "Rollout spec"): pydantic models at the edge.

``load_spec`` accepts YAML/JSON text, a path or a dict and returns a frozen :class:`RolloutSpec`;
every validation problem becomes one :class:`~rollout.errors.SpecError` whose message names the
field path and what was expected, e.g.
``strategy.canary.steps[1].weight: must be 1..100, got 150``.

- ``strategy`` is a one-key mapping: ``canary`` (explicit steps), ``linear`` (``steps: N``
  expands to N equal steps ending at 100%) or ``blue_green`` (a 0% preview step, reachable by
  pinning only, then a 100% bake step with the old version still loaded) or ``shadow`` (a
  mirrored-traffic step with paired analysis, then a recommendation or canary steps). It
  validates to one model per strategy (:class:`CanaryStrategy`, ...: a discriminated union on
  the key); each has ``name``, ``sticky_key``, ``steps()`` and ``canary`` / ``shadow`` (None
  unless it is that strategy).
- Durations are seconds or strings such as ``"30s"``, ``"10m"``, ``"1h"``, ``"1h30m"``; they are
  stored as float seconds (``min_duration_s``; YAML key ``min_duration``).
- ``analysis.gates`` is a list of one-key mappings (``{error_rate: {max_increase: 0.005}}``) or
  bare gate names (``latency``), each gate at most once; each validates to one model per gate
  (:class:`ErrorRateEntry`, ...), whose one field holds the gate's typed settings;
  ``analysis.error_rate`` (``latency``, ...) is that gate's settings or None.
- :func:`config_hash` is sha256 over the canonical JSON of the validated spec (defaults filled
  in), so two spellings of the same spec hash the same.
- :func:`default_spec` is what ``rollout start`` uses without ``-f``: canary steps 10/50/100,
  gates error_rate, latency, output_drift and quality, pause when inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from monitors.drift import DriftMethod
from monitors.quality import LossMetric
from rollout.errors import SpecError
from rollout.machine import Step

OnInconclusive = Literal["pause", "extend", "rollback"]
GateName = Literal["error_rate", "latency", "output_drift", "quality"]
GATE_NAMES: tuple[GateName, ...] = get_args(GateName)
QualityMetric = Literal["accuracy", "auc", LossMetric]

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"1h30m"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    else:
        raise ValueError(f"expected a duration such as '30s', '10m' or '1h', got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def _requests(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return value


def _optional_duration(value: object) -> object:
    return None if value is None else parse_duration(value)


# Field types shared by the strategies: a request count, a duration, an optional duration.
Requests = Annotated[int, BeforeValidator(_requests)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(_optional_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _tag(value: object, models: tuple[type[_Model], ...]) -> str | None:
    """Which model of a one-key union validates ``value``: the one whose only field is its key.

    The tag is the model's class name, never a YAML key, so :func:`format_errors` can drop it
    from error paths (pydantic puts it there, between the union and the model's field).
    """
    for model in models:
        if isinstance(value, model) or (
            isinstance(value, Mapping) and next(iter(model.model_fields)) in value
        ):
            return model.__name__
    return None


class StepSpec(_Model):
    weight: int = Field(description="canary share of traffic in percent, 1..100")
    min_requests: Requests = 100
    min_duration_s: Duration = Field(default=0.0, alias="min_duration")
    max_duration_s: OptionalDuration = Field(default=None, alias="max_duration")

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValueError(f"must be 1..100, got {value!r}")
        return value

    @model_validator(mode="after")
    def _durations_ordered(self) -> StepSpec:
        if self.max_duration_s is not None and self.max_duration_s < self.min_duration_s:
            raise ValueError(
                f"max_duration ({self.max_duration_s:g}s) must not be shorter than "
                f"min_duration ({self.min_duration_s:g}s)"
            )
        return self

    def to_step(self) -> Step:
        return Step(
            weight_pct=self.weight,
            min_requests=self.min_requests,
            min_duration_s=self.min_duration_s,
            max_duration_s=self.max_duration_s,
        )


class CanarySpec(_Model):
    steps: tuple[StepSpec, ...]
    sticky_key: str | None = None

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[StepSpec, ...]) -> tuple[StepSpec, ...]:
        if not steps:
            raise ValueError("must list at least one step")
        for index in range(1, len(steps)):
            if steps[index].weight <= steps[index - 1].weight:
                raise ValueError(
                    f"weights must increase: step {index} has {steps[index].weight}, "
                    f"step {index - 1} has {steps[index - 1].weight}"
                )
        return steps


class LinearSpec(_Model):
    steps: int
    min_requests: Requests = 100
    min_duration_s: Duration = Field(default=0.0, alias="min_duration")
    max_duration_s: OptionalDuration = Field(default=None, alias="max_duration")
    sticky_key: str | None = None

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValueError(f"must be a number of steps 1..100, got {value!r}")
        return value

    def expand(self) -> tuple[StepSpec, ...]:
        """N equal steps: ``steps: 4`` gives 25, 50, 75, 100."""
        return tuple(
            StepSpec(
                weight=round(100 * k / self.steps),
                min_requests=self.min_requests,
                min_duration=self.min_duration_s,
                max_duration=self.max_duration_s,
            )
            for k in range(1, self.steps + 1)
        )


class BlueGreenSpec(_Model):
    """``blue_green: {preview: 5m, preview_requests: 200, bake: 10m, min_requests: 100}``.

    The candidate is staged at 0% (reachable only by pinning: smoke tests, previews) for at
    least ``preview``. Requests pinned to it during the preview are judged by the analysis
    gates against the baseline serving at the same time: with ``preview_requests`` > 0 the
    switch waits for that many pinned requests and a pass of every gate; with 0 (the default)
    the preview is judged by time, though a gate that fails on the pinned requests still rolls
    back. Then all traffic switches to it at once, and for ``bake`` (and until it served
    ``min_requests``) the old version stays in the plan, loaded, for an instant rollback; then
    it is promoted.
    """

    preview_s: Duration = Field(default=0.0, alias="preview")
    preview_requests: Requests = 0
    bake_s: Duration = Field(default=300.0, alias="bake")
    min_requests: Requests = 100
    sticky_key: str | None = None

    def steps(self) -> tuple[Step, ...]:
        return (
            Step(weight_pct=0, min_requests=self.preview_requests, min_duration_s=self.preview_s),
            Step(weight_pct=100, min_requests=self.min_requests, min_duration_s=self.bake_s),
        )


class ShadowSpec(_Model):
    """``shadow: {fraction: 1.0, min_requests: 200, test: disagreement, then: stop}``.

    ``fraction`` of the requests are mirrored to the candidate, which answers nobody; once
    ``min_requests`` pairs (and ``min_duration``) are in, the paired outputs are tested
    (``disagreement``: share of different classes ≤ ``max_disagreement``; ``mcnemar``: not
    wrong more often, on labelled pairs; ``wilcoxon``: no shift, for regressors). A failure
    rolls back; a pass ends with a recommendation that waits for an approval (``then: stop``)
    or continues as the ``canary`` steps given (``then: canary``).
    """

    fraction: float = 1.0
    min_requests: Requests = 200
    min_duration_s: Duration = Field(default=0.0, alias="min_duration")
    max_duration_s: OptionalDuration = Field(default=None, alias="max_duration")
    test: Literal["disagreement", "mcnemar", "wilcoxon"] = "disagreement"
    max_disagreement: float = 0.05
    then: Literal["stop", "canary"] = "stop"
    canary: CanarySpec | None = None
    sticky_key: str | None = None

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"must be a share of requests in (0, 1], got {value!r}")
        return value

    @field_validator("max_disagreement")
    @classmethod
    def _max_disagreement(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be a fraction in [0, 1), got {value!r}")
        return value

    @model_validator(mode="after")
    def _then(self) -> ShadowSpec:
        if self.then == "canary" and self.canary is None:
            raise ValueError("then: canary needs the 'canary' steps to continue with")
        if self.then == "stop" and self.canary is not None:
            raise ValueError("'canary' steps are only used with then: canary")
        return self

    def steps(self) -> tuple[Step, ...]:
        shadow = Step(
            weight_pct=0,
            min_requests=self.min_requests,
            min_duration_s=self.min_duration_s,
            max_duration_s=self.max_duration_s,
            shadow_fraction=self.fraction,
        )
        following = self.canary.steps if self.canary is not None else ()
        return (shadow, *(step.to_step() for step in following))


StrategyName = Literal["canary", "linear", "blue_green", "shadow"]
STRATEGIES: tuple[StrategyName, ...] = get_args(StrategyName)


# Every strategy answers ``canary`` and ``shadow`` (None unless it is that strategy), as the
# one model with four optional fields did: the manager reads ``strategy.shadow``, the demo
# ``strategy.canary``.
class _NoCanary:
    @property
    def canary(self) -> None:
        """Not the canary strategy (``strategy.canary`` is unset)."""
        return None


class _NoShadow:
    @property
    def shadow(self) -> None:
        """Not the shadow strategy (``strategy.shadow`` is unset)."""
        return None


class CanaryStrategy(_NoShadow, _Model):
    """``strategy: {canary: {steps: [...]}}``."""

    name: ClassVar[Literal["canary"]] = "canary"
    canary: CanarySpec

    @property
    def sticky_key(self) -> str | None:
        return self.canary.sticky_key

    def steps(self) -> tuple[Step, ...]:
        return tuple(step.to_step() for step in self.canary.steps)


class LinearStrategy(_NoCanary, _NoShadow, _Model):
    """``strategy: {linear: {steps: N}}``."""

    name: ClassVar[Literal["linear"]] = "linear"
    linear: LinearSpec

    @property
    def sticky_key(self) -> str | None:
        return self.linear.sticky_key

    def steps(self) -> tuple[Step, ...]:
        return tuple(step.to_step() for step in self.linear.expand())


class BlueGreenStrategy(_NoCanary, _NoShadow, _Model):
    """``strategy: {blue_green: {...}}``."""

    name: ClassVar[Literal["blue_green"]] = "blue_green"
    blue_green: BlueGreenSpec

    @property
    def sticky_key(self) -> str | None:
        return self.blue_green.sticky_key

    def steps(self) -> tuple[Step, ...]:
        return self.blue_green.steps()


class ShadowStrategy(_NoCanary, _Model):
    """``strategy: {shadow: {...}}`` (its own ``canary`` steps are ``shadow.canary``)."""

    name: ClassVar[Literal["shadow"]] = "shadow"
    shadow: ShadowSpec

    @property
    def sticky_key(self) -> str | None:
        return self.shadow.sticky_key

    def steps(self) -> tuple[Step, ...]:
        return self.shadow.steps()


_STRATEGY_TYPES = (CanaryStrategy, LinearStrategy, BlueGreenStrategy, ShadowStrategy)


def _quoted(names: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [f"'{name}'" for name in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _one_strategy(value: object) -> object:
    """``strategy`` must be a mapping with exactly one strategy key (a null one counts as unset).

    Other keys go on to the chosen strategy's model, which reports each as an unknown field.
    """
    if isinstance(value, _STRATEGY_TYPES):
        return value
    expected = f"expected exactly one of {_quoted(STRATEGIES)}"
    if not isinstance(value, Mapping):
        raise ValueError(f"{expected} as the key of a mapping, got {value!r}")
    given = [name for name in value if name in STRATEGIES and value[name] is not None]
    unknown = [str(key) for key in value if key not in STRATEGIES]
    if not given and unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; {expected}")
    if len(given) != 1:
        raise ValueError(expected + (f", got {' and '.join(given)}" if given else ""))
    return {key: item for key, item in value.items() if key not in STRATEGIES or key in given}


StrategySpec = Annotated[
    Annotated[CanaryStrategy, Tag("CanaryStrategy")]
    | Annotated[LinearStrategy, Tag("LinearStrategy")]
    | Annotated[BlueGreenStrategy, Tag("BlueGreenStrategy")]
    | Annotated[ShadowStrategy, Tag("ShadowStrategy")],
    Discriminator(lambda value: _tag(value, _STRATEGY_TYPES)),
    BeforeValidator(_one_strategy),
]
"""``strategy``: a one-key mapping, validated as the model of the strategy its key names."""


def _fraction(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be a fraction in [0, 1), got {value!r}")
    return value


class _SequentialOptions(_Model):
    """Per-gate sequential-test options; ``sequential: null`` follows ``analysis.sequential``."""

    sequential: bool | None = None
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    # error_rate, quality (accuracy): inconclusive until each arm has the n for `power` at `tau`
    require_power: bool = False


class ErrorRateGate(_SequentialOptions):
    max_increase: float = 0.005
    min_n: int = Field(default=100, ge=1)
    tau: float = Field(default=0.01, gt=0.0)  # mSPRT mixture scale: excess rate to detect

    @field_validator("max_increase")
    @classmethod
    def _max_increase(cls, value: float) -> float:
        return _fraction(value)


class LatencyGate(_SequentialOptions):
    quantile: float = 0.95
    max_ratio: float = 1.2
    min_n: int = Field(default=30, ge=1)
    tau: float = Field(default=0.1, gt=0.0)  # on P(canary slower) - 1/2

    @field_validator("quantile")
    @classmethod
    def _quantile(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"must be in (0, 1), got {value!r}")
        return value

    @field_validator("max_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not value >= 1.0:
            raise ValueError(f"must be >= 1 (canary quantile / baseline quantile), got {value!r}")
        return value


class OutputDriftGate(_Model):
    method: DriftMethod = "auto"
    threshold: float = Field(default=0.2, gt=0.0)
    min_n: int = Field(default=30, ge=1)
    tau: float = Field(default=0.2, gt=0.0)  # mean_shift only: shift in baseline sds to detect


class QualityGate(_SequentialOptions):
    # accuracy and auc: non-inferiority with max_decrease; log_loss, mae, rmse: max_increase
    metric: QualityMetric = "accuracy"
    max_decrease: float = 0.01  # accuracy, auc: allowed drop (fraction)
    max_increase: float = Field(default=0.0, ge=0.0)  # log_loss, mae, rmse: allowed rise
    min_labels: int = Field(default=50, ge=1)
    tau: float | None = Field(default=None, gt=0.0)  # None: 0.03 (accuracy, auc), sd/4 (losses)

    @field_validator("max_decrease")
    @classmethod
    def _max_decrease(cls, value: float) -> float:
        return _fraction(value)


class ErrorRateEntry(_Model):
    name: ClassVar[Literal["error_rate"]] = "error_rate"
    error_rate: ErrorRateGate


class LatencyEntry(_Model):
    name: ClassVar[Literal["latency"]] = "latency"
    latency: LatencyGate


class OutputDriftEntry(_Model):
    name: ClassVar[Literal["output_drift"]] = "output_drift"
    output_drift: OutputDriftGate


class QualityEntry(_Model):
    name: ClassVar[Literal["quality"]] = "quality"
    quality: QualityGate


_GATE_TYPES = (ErrorRateEntry, LatencyEntry, OutputDriftEntry, QualityEntry)


def _one_gate(value: object) -> object:
    """A gate item is a bare gate name or a mapping with exactly one gate key (null: defaults)."""
    if isinstance(value, _GATE_TYPES):
        return value
    if isinstance(value, str):
        value = {value: {}}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"expected a gate name or a one-key mapping such as "
            f"{{error_rate: {{max_increase: 0.005}}}}, got {value!r}"
        )
    unknown = [str(key) for key in value if key not in GATE_NAMES]
    if unknown:
        raise ValueError(f"unknown gate {unknown[0]!r}; expected one of {', '.join(GATE_NAMES)}")
    if len(value) != 1:
        raise ValueError(
            f"expected exactly one of {', '.join(GATE_NAMES)}, "
            f"got {' and '.join(value) if value else 'none'}"
        )
    return {key: ({} if item is None else item) for key, item in value.items()}


GateEntry = Annotated[
    Annotated[ErrorRateEntry, Tag("ErrorRateEntry")]
    | Annotated[LatencyEntry, Tag("LatencyEntry")]
    | Annotated[OutputDriftEntry, Tag("OutputDriftEntry")]
    | Annotated[QualityEntry, Tag("QualityEntry")],
    Discriminator(lambda value: _tag(value, _GATE_TYPES)),
    BeforeValidator(_one_gate),
]
"""One item of ``analysis.gates``, validated as the model of the gate its key names."""


class AnalysisSpec(_Model):
    alpha: float = 0.05
    gates: tuple[GateEntry, ...] = ()
    on_inconclusive: OnInconclusive = "pause"
    correction: Literal["holm", "none"] = "holm"
    sequential: bool = True  # always-valid p-values for error_rate, latency and quality

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0.0 < value < 0.5:
            raise ValueError(f"must be a significance level in (0, 0.5), got {value!r}")
        return value

    @field_validator("gates")
    @classmethod
    def _unique(cls, gates: tuple[GateEntry, ...]) -> tuple[GateEntry, ...]:
        seen: set[str] = set()
        for gate in gates:
            if gate.name in seen:
                raise ValueError(f"gate {gate.name!r} is listed twice")
            seen.add(gate.name)
        return gates

    @property
    def error_rate(self) -> ErrorRateGate | None:
        """The ``error_rate`` gate's settings, or None when the spec does not list it."""
        return next((e.error_rate for e in self.gates if isinstance(e, ErrorRateEntry)), None)

    @property
    def latency(self) -> LatencyGate | None:
        return next((e.latency for e in self.gates if isinstance(e, LatencyEntry)), None)

    @property
    def output_drift(self) -> OutputDriftGate | None:
        return next((e.output_drift for e in self.gates if isinstance(e, OutputDriftEntry)), None)

    @property
    def quality(self) -> QualityGate | None:
        return next((e.quality for e in self.gates if isinstance(e, QualityEntry)), None)


class ApprovalSpec(_Model):
    """``approval: {required: true, timeout: 24h, on_timeout: rollback}``.

    ``required`` adds to the environment's own policy (either may require an approval);
    ``timeout`` (unset: wait for ever) and ``on_timeout`` override the environment's.
    """

    required: bool = False
    timeout_s: OptionalDuration = Field(default=None, alias="timeout")
    on_timeout: Literal["rollback", "abort"] | None = None


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
    "analysis": {
        "alpha": 0.05,
        "gates": [
            {"error_rate": {"max_increase": 0.005}},
            {"latency": {"quantile": 0.95, "max_ratio": 1.2}},
            {"output_drift": {"method": "auto", "threshold": 0.2}},
            {"quality": {"metric": "accuracy", "max_decrease": 0.01}},
        ],
        "on_inconclusive": "pause",
    },
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
