"""``strategy``: how the canary's traffic grows, as one model per strategy.

``strategy`` is a one-key mapping: ``canary`` (explicit steps), ``linear`` (``steps: N``
expands to N equal steps ending at 100%) or ``blue_green`` (a 0% preview step, reachable by
pinning only, then a 100% bake step with the old version still loaded) or ``shadow`` (a
mirrored-traffic step with paired analysis, then a recommendation or canary steps). It
validates to one model per strategy (:class:`CanaryStrategy`, ...: a discriminated union on
the key, ``StrategySpec``); each has ``name``, ``sticky_key``, ``steps()`` (the
:class:`~rollout.machine.Step` tuple the state machine walks) and ``canary`` / ``shadow`` (None
unless it is that strategy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from rollout.lifecycle import Step
from rollout.spec.fields import Duration, OptionalDuration, Requests, _Model, _tag


class StepSpec(_Model):
    weight: int = Field(description="canary share of traffic in percent, 1..100")
    min_requests: Requests = 100
    min_duration_s: Duration = Field(default=0.0, alias="min_duration")
    max_duration_s: OptionalDuration = Field(default=None, alias="max_duration")
    # canary requests after which an undecided step applies on_inconclusive (None: the default,
    # rollout.lifecycle.DEFAULT_MAX_REQUESTS); left out of the canonical JSON when unset
    max_requests: int | None = Field(default=None, ge=1, exclude_if=lambda value: value is None)

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
            max_requests=self.max_requests,
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
    (``disagreement``: share of different classes proven ≤ ``max_disagreement``; ``mcnemar``:
    accuracy on labelled pairs proven at most ``max_decrease`` below the baseline's;
    ``wilcoxon``: median shift proven within
    ``max_shift``, for regressors). A failure
    rolls back; a pass ends with a recommendation that waits for an approval (``then: stop``)
    or continues as the ``canary`` steps given (``then: canary``).
    """

    fraction: float = 1.0
    min_requests: Requests = 200
    min_duration_s: Duration = Field(default=0.0, alias="min_duration")
    max_duration_s: OptionalDuration = Field(default=None, alias="max_duration")
    test: Literal["disagreement", "mcnemar", "wilcoxon"] = "disagreement"
    max_disagreement: float = 0.05
    # wilcoxon: the median shift of paired outputs allowed (in output units; 0: none at all)
    max_shift: float = Field(default=0.0, ge=0.0, exclude_if=lambda value: value == 0.0)
    # mcnemar: the accuracy points the candidate may lose on the same labelled requests
    max_decrease: float = Field(
        default=0.01, ge=0.0, lt=1.0, exclude_if=lambda value: value == 0.01
    )
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
