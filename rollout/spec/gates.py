"""``analysis``: the gates a step must pass, and how their verdicts combine.

``analysis.gates`` is a list of one-key mappings (``{error_rate: {max_increase: 0.005}}``) or
bare gate names (``latency``), each gate at most once; each validates to one model per gate
(:class:`ErrorRateEntry`, ...: a discriminated union on the key, ``GateEntry``), whose one
field holds the gate's typed settings (:class:`ErrorRateGate`, ...);
``analysis.error_rate`` (``latency``, ...) is that gate's settings or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from monitors.names import DriftMethod, LossMetric
from rollout.lifecycle import OnInconclusive
from rollout.spec.fields import _Model, _tag

GateName = Literal["error_rate", "latency", "output_drift", "quality", "input_drift"]
GATE_NAMES: tuple[GateName, ...] = get_args(GateName)
QualityMetric = Literal["accuracy", "auc", LossMetric]


def _fraction(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be a fraction in [0, 1), got {value!r}")
    return value


def _unless(default: object) -> Any:
    """A field added after specs were first stored: left out of the canonical JSON while it
    holds its default, so a stored spec keeps its config hash."""
    return lambda value: value == default


class _GateOptions(_Model):
    # reported, never deciding (issue 9); left out of the canonical JSON when False
    advisory: bool = Field(default=False, exclude_if=_unless(False))


class _SequentialOptions(_GateOptions):
    """Options of the fixed-horizon tests these gates used before their confidence sequences
    (still accepted in stored specs; the judge does not use them)."""

    sequential: bool | None = None
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    # error_rate, quality (accuracy): inconclusive until each arm has the n for `power` at `tau`
    require_power: bool = False


class ErrorRateGate(_SequentialOptions):
    """The canary may err at most ``max_ratio`` times the baseline's rate, or at most
    ``max_increase`` above it (absolute), whichever allows more."""

    max_increase: float = 0.005
    max_ratio: float = Field(default=1.5, ge=1.0, exclude_if=_unless(1.5))
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


class OutputDriftGate(_GateOptions):
    """The outputs' distance (total variation of a category mix, KS of numbers) may be at most
    ``delta``; without ``delta`` the gate is advisory (a better model may move its outputs).
    ``method``/``threshold`` name an advisory effect size reported beside it."""

    delta: float | None = Field(default=None, gt=0.0, lt=1.0, exclude_if=_unless(None))
    method: DriftMethod = "auto"
    threshold: float = Field(default=0.2, gt=0.0)
    min_n: int = Field(default=30, ge=1)
    tau: float = Field(default=0.2, gt=0.0)  # mean_shift only: shift in baseline sds to detect


class InputDriftGate(_GateOptions):
    """The candidate's inputs against its training reference (``rollout reference``), feature
    by feature: a feature is drifted when its distance (KS of numbers, total variation of
    categories) is proven beyond ``delta``, with the false discovery rate across features held
    at the gate's alpha (Benjamini-Yekutieli, :mod:`monitors.features`); the gate fails when
    the drifted share reaches ``max_share`` and passes when it cannot. Advisory unless
    ``advisory: false`` (a candidate does not choose its inputs: drift is a warning about the
    world more often than about the model). Without a reference, the baseline's first
    ``max_rows`` requests of the rollout stand in for one, and the result says so."""

    advisory: bool = Field(default=True, exclude_if=_unless(True))
    delta: float = Field(default=0.1, gt=0.0, lt=1.0)
    max_share: float = Field(default=0.5, gt=0.0, le=1.0)
    min_n: int = Field(default=100, ge=1)
    max_rows: int = Field(default=20_000, ge=100, le=200_000)  # the first rows counted


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


class SloErrorRate(_Model):
    """The candidate's error rate (a failover counts as its error) may be at most ``max``."""

    max: float = Field(gt=0.0, lt=1.0)


class SloLatency(_Model):
    """The candidate's ``quantile`` latency may be at most ``max_ms``."""

    quantile: float = Field(default=0.99, gt=0.0, lt=1.0)
    max_ms: float = Field(gt=0.0)


class SloSpec(_Model):
    """``slo: {error_rate: {max: 0.01}, latency: {quantile: 0.99, max_ms: 250}}``: bounds on the
    candidate alone, judged where no baseline serves beside it (a 100% step, a blue/green
    bake), one-sample and anytime-valid like the gates. Left out: ``DEFAULT_SLO``."""

    error_rate: SloErrorRate | None = None
    latency: SloLatency | None = None


# the SLO when a spec gives none: a candidate that fails more than 5% of its requests (its
# failovers included) is proven broken; relative regressions are the history gates' to find
DEFAULT_SLO = SloSpec(error_rate=SloErrorRate(max=0.05))


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


class InputDriftEntry(_Model):
    name: ClassVar[Literal["input_drift"]] = "input_drift"
    input_drift: InputDriftGate


_GATE_TYPES = (ErrorRateEntry, LatencyEntry, OutputDriftEntry, QualityEntry, InputDriftEntry)


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
    | Annotated[QualityEntry, Tag("QualityEntry")]
    | Annotated[InputDriftEntry, Tag("InputDriftEntry")],
    Discriminator(lambda value: _tag(value, _GATE_TYPES)),
    BeforeValidator(_one_gate),
]
"""One item of ``analysis.gates``, validated as the model of the gate its key names."""


class AnalysisSpec(_Model):
    """``gates`` left out (or empty) means the default gates; no gates at all must be asked
    for in so many words: ``gates: none``."""

    alpha: float = 0.05
    gates: tuple[GateEntry, ...] = ()
    # ``gates: none`` in a spec: no gate judges (stored as this flag, left out when False)
    no_gates: bool = Field(default=False, exclude_if=_unless(False))
    on_inconclusive: OnInconclusive = "pause"
    correction: Literal["holm", "none"] = "holm"
    sequential: bool = True  # always-valid p-values for error_rate, latency and quality
    # where no baseline serves beside the candidate; None: DEFAULT_SLO (left out of the hash)
    slo: SloSpec | None = Field(default=None, exclude_if=_unless(None))

    @property
    def effective_slo(self) -> SloSpec:
        """The spec's SLO; left out, ``DEFAULT_SLO``, or none with ``gates: none`` (nothing
        judges such a rollout unless its spec gives an ``slo``)."""
        if self.slo is not None:
            return self.slo
        return SloSpec() if self.no_gates else DEFAULT_SLO

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0.0 < value < 0.5:
            raise ValueError(f"must be a significance level in (0, 0.5), got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        if isinstance(value, Mapping) and value.get("gates") == "none":
            return {**value, "gates": (), "no_gates": True}
        return value

    @model_validator(mode="after")
    def _no_gates_listed(self) -> AnalysisSpec:
        if self.no_gates and self.gates:
            raise ValueError("gates: none, but gates are listed too")
        return self

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
    def effective_gates(self) -> tuple[GateEntry, ...]:
        """The gates that judge: the listed ones, the default ones when none are listed, or
        none at all when the spec says ``gates: none``."""
        if self.no_gates:
            return ()
        return self.gates or default_gates()

    @property
    def defaulted(self) -> bool:
        """The spec listed no gates, so the default ones judge."""
        return not self.gates and not self.no_gates

    @property
    def error_rate(self) -> ErrorRateGate | None:
        """The ``error_rate`` gate's settings, or None when no gate of that name judges."""
        gates = self.effective_gates
        return next((e.error_rate for e in gates if isinstance(e, ErrorRateEntry)), None)

    @property
    def latency(self) -> LatencyGate | None:
        gates = self.effective_gates
        return next((e.latency for e in gates if isinstance(e, LatencyEntry)), None)

    @property
    def output_drift(self) -> OutputDriftGate | None:
        gates = self.effective_gates
        return next((e.output_drift for e in gates if isinstance(e, OutputDriftEntry)), None)

    @property
    def quality(self) -> QualityGate | None:
        gates = self.effective_gates
        return next((e.quality for e in gates if isinstance(e, QualityEntry)), None)

    @property
    def input_drift(self) -> InputDriftGate | None:
        gates = self.effective_gates
        return next((e.input_drift for e in gates if isinstance(e, InputDriftEntry)), None)


# The default gates: errors at most 1.5x the baseline's rate (or +0.05 point, whichever allows
# more: 0.1% -> 0.3% is beyond it), p95 latency at most 1.2x, accuracy at most 1 point lower,
# and output drift reported (advisory).
DEFAULT_GATES: tuple[dict[str, Any], ...] = (
    {"error_rate": {"max_increase": 0.0005, "max_ratio": 1.5}},
    {"latency": {"quantile": 0.95, "max_ratio": 1.2}},
    {"output_drift": {"method": "auto", "threshold": 0.2}},
    {"quality": {"metric": "accuracy", "max_decrease": 0.01}},
)


def default_gates() -> tuple[GateEntry, ...]:
    return _DEFAULT_GATES


_DEFAULT_GATES: tuple[GateEntry, ...] = ()


_DEFAULT_GATES = AnalysisSpec.model_validate({"gates": list(DEFAULT_GATES)}).effective_gates
