"""The rollout spec (YAML; the README's "Rollout spec"): pydantic models at the edge.

``load_spec`` accepts YAML/JSON text, a path or a dict and returns a frozen :class:`RolloutSpec`;
every validation problem becomes one :class:`~rollout.errors.SpecError` whose message names the
field path and what was expected, e.g.
``strategy.canary.steps[1].weight: must be 1..100, got 150``. Every name below is importable
from ``rollout.spec``; the modules say how each part validates:

- :mod:`~rollout.spec.fields`      ``parse_duration``; the ``Requests``, ``Duration`` and
  ``OptionalDuration`` field types; the frozen base model
- :mod:`~rollout.spec.strategies`  ``strategy``: the steps and the four strategies (canary,
  linear, blue_green, shadow), one model each, and their union ``StrategySpec``
- :mod:`~rollout.spec.gates`       ``analysis``: the gate settings, the ``GateEntry`` union and
  ``AnalysisSpec``
- :mod:`~rollout.spec.document`    ``RolloutSpec`` (with approval and smoke tests),
  ``load_spec``, ``format_errors``, ``config_hash``, ``default_spec``
"""

from rollout.lifecycle import OnInconclusive
from rollout.spec.document import (
    DEFAULT_SPEC,
    ApprovalSpec,
    RolloutSpec,
    SmokeTest,
    config_hash,
    default_spec,
    format_errors,
    load_spec,
)
from rollout.spec.fields import Duration, OptionalDuration, Requests, parse_duration
from rollout.spec.gates import (
    DEFAULT_SLO,
    GATE_NAMES,
    AnalysisSpec,
    ErrorRateEntry,
    ErrorRateGate,
    GateEntry,
    GateName,
    InputDriftEntry,
    InputDriftGate,
    LatencyEntry,
    LatencyGate,
    OutputDriftEntry,
    OutputDriftGate,
    QualityEntry,
    QualityGate,
    QualityMetric,
    SloErrorRate,
    SloLatency,
    SloSpec,
)
from rollout.spec.strategies import (
    STRATEGIES,
    BlueGreenSpec,
    BlueGreenStrategy,
    CanarySpec,
    CanaryStrategy,
    LinearSpec,
    LinearStrategy,
    ShadowSpec,
    ShadowStrategy,
    StepSpec,
    StrategyName,
    StrategySpec,
)

__all__ = [
    "DEFAULT_SLO",
    "DEFAULT_SPEC",
    "GATE_NAMES",
    "STRATEGIES",
    "AnalysisSpec",
    "ApprovalSpec",
    "BlueGreenSpec",
    "BlueGreenStrategy",
    "CanarySpec",
    "CanaryStrategy",
    "Duration",
    "ErrorRateEntry",
    "ErrorRateGate",
    "GateEntry",
    "GateName",
    "InputDriftEntry",
    "InputDriftGate",
    "LatencyEntry",
    "LatencyGate",
    "LinearSpec",
    "LinearStrategy",
    "OnInconclusive",
    "OptionalDuration",
    "OutputDriftEntry",
    "OutputDriftGate",
    "QualityEntry",
    "QualityGate",
    "QualityMetric",
    "Requests",
    "RolloutSpec",
    "ShadowSpec",
    "ShadowStrategy",
    "SloErrorRate",
    "SloLatency",
    "SloSpec",
    "SmokeTest",
    "StepSpec",
    "StrategyName",
    "StrategySpec",
    "config_hash",
    "default_spec",
    "format_errors",
    "load_spec",
    "parse_duration",
]
