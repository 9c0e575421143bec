"""``rollout apply`` and ``rollout plan``: a spec file as the declared state of one rollout.

:func:`apply` is idempotent. The spec (with ``model``, ``candidate`` and ``environment``) is
compared with what the store already has, by config hash:

- a rollout of the same version with the same config is active, or was the latest one in the
  environment (whatever its outcome) → nothing happens (``unchanged``);
- no rollout is active → the rollout is started (:meth:`Manager.start`) and the spec recorded as
  the next *config version* of (environment, model) (the same spec is always the same version);
- another rollout, or the same version with a changed spec, is active → StateError: finish,
  roll back or abort it first (a running rollout is never changed under its feet).

:func:`plan` changes nothing (it reads the registry and the store, never records a digest): it
shows what ``apply`` would do, the steps and gates, the least and most time, and who must
approve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rollout.errors import RegistryError, SpecError, StateError
from rollout.manager import Manager
from rollout.spec import AnalysisSpec, RolloutSpec, config_hash
from rollout.stored import approval_of, bind_spec


@dataclass(frozen=True)
class ApplyResult:
    action: Literal["started", "unchanged"]
    config_version: int
    rollout_id: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlanStep:
    weight_pct: int
    min_requests: int
    min_duration_s: float
    max_duration_s: float | None
    shadow_fraction: float = 0.0


@dataclass(frozen=True)
class RolloutPlan:
    model: str
    environment: str
    candidate: str  # as written: "7" or "@challenger"
    candidate_version: str | None  # None when the registry does not have it
    baseline_version: str | None  # what serves now; None: this would be an initial release
    would: str  # what apply would do, in one sentence
    config_version: int | None  # the existing config version of this spec, if any
    config_hash: str
    strategy: str
    steps: tuple[PlanStep, ...]
    gates: tuple[dict[str, Any], ...]
    gates_from: Literal["spec", "default", "none"]  # "default": the spec lists none
    on_inconclusive: str
    least_time_s: float
    least_canary_requests: int
    most_time_s: float | None  # None: unbounded
    most_time_note: str
    approval: str  # who must approve, or "not required"
    requires: str | None  # the environment the version must have succeeded in first
    problems: tuple[str, ...] = field(default_factory=tuple)  # why apply would fail
    # canary requests the first judged step needs to pass an equal candidate, on average
    # (rollout/forecast.py), and what that assumes; None: no blocking gate, or no split step
    expected_requests: int | None = None
    expected_note: str = ""
    watch: str = "not watched"  # after promotion: for how long, or "not watched"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _declared(spec: RolloutSpec, manager: Manager) -> tuple[str, str, str]:
    """The spec's model, candidate and environment; SpecError when one is missing,
    UnknownEnvironment when the environment is not configured (refused, never planned)."""
    missing = [
        name for name in ("model", "candidate", "environment") if getattr(spec, name) is None
    ]
    if missing:
        raise SpecError(f"{missing[0]}: required in a spec given to apply or plan")
    assert spec.model is not None and spec.candidate is not None and spec.environment is not None
    manager.environments.check(spec.environment, "environment")
    return spec.model, spec.candidate, spec.environment


def apply(manager: Manager, spec: RolloutSpec, actor: str) -> ApplyResult:
    """Bring the store to the declared rollout; a second identical apply changes nothing."""
    model, candidate, environment = _declared(spec, manager)
    bound = bind_spec(spec, model, candidate, environment)
    digest_of_config = config_hash(bound)
    configs = manager.configs
    version = manager.resolve(model, candidate).version
    active = manager.active(model, environment)
    if active is not None:
        if (active.candidate_version, active.config_hash) != (version, digest_of_config):
            what = "a changed spec" if active.candidate_version == version else "this spec"
            raise StateError(
                f"{model} has rollout {active.id} of v{active.candidate_version} "
                f"({active.state}) in {environment}; it is never changed under its feet: "
                f"promote, roll back or abort it before applying {what}"
            )
        config, _ = configs.record(
            environment, model, digest_of_config, bound.canonical_json(), actor
        )
        return ApplyResult(
            "unchanged",
            config.version,
            active.id,
            f"unchanged: rollout {active.id} of v{version} is {active.state} "
            f"(config v{config.version})",
        )
    latest = manager.latest(model, environment)
    if latest is not None and (latest.candidate_version, latest.config_hash) == (
        version,
        digest_of_config,
    ):
        config, _ = configs.record(
            environment, model, digest_of_config, bound.canonical_json(), actor
        )
        return ApplyResult(
            "unchanged",
            config.version,
            latest.id,
            f"unchanged: rollout {latest.id} of v{version} with this spec {latest.state} "
            f"(config v{config.version}); change the spec or use 'rollout start' to try again",
        )
    rollout_id = manager.start(model, candidate, environment, bound, actor)
    config, created = configs.record(
        environment, model, digest_of_config, bound.canonical_json(), actor
    )
    record = manager.rollout(rollout_id)
    return ApplyResult(
        "started",
        config.version,
        rollout_id,
        f"started rollout {rollout_id} of v{version} with "
        f"{'new ' if created else ''}config v{config.version}: {record.state}",
    )


def plan(manager: Manager, spec: RolloutSpec) -> RolloutPlan:
    """What :func:`apply` would do with ``spec``, and the rollout it declares. Changes nothing."""
    model, candidate, environment = _declared(spec, manager)
    bound = bind_spec(spec, model, candidate, environment)
    digest_of_config = config_hash(bound)
    problems: list[str] = []
    try:
        version: str | None = manager.resolve(model, candidate).version
    except RegistryError as exc:
        version = None
        problems.append(str(exc))
    baseline = manager.serving_version(model, environment)
    existing = manager.configs.find(environment, model, digest_of_config)
    requires = manager.environments.previous(environment)
    if requires is not None and version is not None:
        history = manager.history(model, requires)
        if history and not any(r.version == version and r.outcome == "succeeded" for r in history):
            problems.append(f"v{version} has not succeeded in {requires} yet")
    active = manager.active(model, environment)
    latest = manager.latest(model, environment)
    same = (version, digest_of_config)
    if active is not None and (active.candidate_version, active.config_hash) == same:
        would = f"nothing: rollout {active.id} of this spec is {active.state}"
    elif active is not None:
        would = "nothing"
        problems.append(f"rollout {active.id} of v{active.candidate_version} is {active.state}")
    elif latest is not None and (latest.candidate_version, latest.config_hash) == same:
        would = f"nothing: rollout {latest.id} of this spec {latest.state}"
    elif baseline is None:
        would = f"initial release of v{version} in {environment}: 100% at once, @{environment} set"
    elif baseline == version:
        would = "nothing"
        problems.append(f"v{version} already serves {environment}")
    else:
        would = f"{bound.strategy.name} of v{version} over v{baseline} in {environment}"
    if problems and not would.startswith("nothing"):
        would = "nothing (see problems)"
    steps = tuple(
        PlanStep(
            s.weight_pct, s.min_requests, s.min_duration_s, s.max_duration_s, s.shadow_fraction
        )
        for s in bound.steps()
    )
    policy = manager.environments.get(environment)
    needs = approval_of(bound, policy)
    if needs.required:
        who = "someone other than who starts it" if needs.distinct_approver else "an approver"
        approval = f"required: {who}" + (
            f", within {needs.timeout_s:g}s (then {needs.on_timeout})"
            if needs.timeout_s is not None
            else ""
        )
    else:
        approval = "not required"
    most, note = _most_time(steps, bound.analysis.on_inconclusive, needs.required, needs.timeout_s)
    expected, expected_note = _expected(bound.analysis, steps)
    return RolloutPlan(
        model=model,
        environment=environment,
        candidate=candidate,
        candidate_version=version,
        baseline_version=baseline,
        would=would,
        config_version=existing.version if existing is not None else None,
        config_hash=digest_of_config,
        strategy=bound.strategy.name,
        steps=steps,
        gates=tuple(
            entry.model_dump(mode="json", exclude_none=True)
            for entry in bound.analysis.effective_gates
        ),
        gates_from=(
            "none" if bound.analysis.no_gates else "default" if bound.analysis.defaulted else "spec"
        ),
        on_inconclusive=bound.analysis.on_inconclusive,
        least_time_s=sum(s.min_duration_s for s in steps),
        least_canary_requests=sum(s.min_requests for s in steps),
        most_time_s=most,
        most_time_note=note,
        approval=approval,
        requires=requires,
        problems=tuple(problems),
        expected_requests=expected,
        expected_note=expected_note,
        watch=_watch(bound.watch_s if bound.watch_s is not None else policy.watch_s),
    )


def _watch(seconds: float) -> str:
    if seconds <= 0:
        return "not watched"
    return (
        f"{seconds:g}s after promotion (the previous version stays loaded; a failing gate "
        "rolls back to it)"
    )


def _expected(analysis: AnalysisSpec, steps: tuple[PlanStep, ...]) -> tuple[int | None, str]:
    """The forecast of the first split step (the rollout's bounds carry over to the next)."""
    from rollout.forecast import BaseRates, requests_to_pass, requests_to_pass_alone
    from rollout.judge import blocking

    split = [s.weight_pct for s in steps if 0 < s.weight_pct < 100 and s.shadow_fraction == 0]
    if not split:
        return None, "no split step: nothing to forecast"
    share, smallest = split[0] / 100, min(split) / 100
    expected = requests_to_pass(analysis, share, min(smallest, 1 - smallest))
    rates = BaseRates()
    if not any(blocking(entry) for entry in analysis.effective_gates):
        return None, "no blocking gates: nothing to forecast"
    if expected is None:
        return None, f"the gates do not pass {rates.describe()} within 10,000,000 requests"
    note = (
        f"step 1 at {split[0]}% passes {rates.describe()} in about {expected:,} canary "
        "requests (the median; bench/decisions.py measures it), later split steps on their "
        "floors"
    )
    alone = [s.weight_pct for s in steps if s.weight_pct >= 100 and s.shadow_fraction == 0]
    if alone:  # the baseline's requests before the switch: at least the first step's
        before = round(expected * (1 - share) / share)
        needed = requests_to_pass_alone(analysis, before, rates, canary_before=expected)
        if needed is not None:
            note += (
                f"; the 100% step passes its SLO and history in about {needed:,} canary "
                "requests more (at most as many as before the switch)"
            )
    return expected, note


def _most_time(
    steps: tuple[PlanStep, ...],
    on_inconclusive: str,
    approval_required: bool,
    approval_timeout_s: float | None,
) -> tuple[float | None, str]:
    unbounded = [i + 1 for i, s in enumerate(steps) if s.max_duration_s is None]
    if unbounded:
        return None, (
            f"unbounded: step {unbounded[0]} has no max_duration and waits for its requests"
        )
    if on_inconclusive != "rollback":
        return None, (
            f"unbounded: with on_inconclusive {on_inconclusive} an inconclusive step pauses "
            "and waits for a person (on_inconclusive: rollback bounds it)"
        )
    total = sum(s.max_duration_s or 0.0 for s in steps)
    if approval_required:
        if approval_timeout_s is None:
            return None, "unbounded: the approval has no timeout"
        total += approval_timeout_s
        return total, "every step at its max_duration, then the approval timeout"
    return total, "every step at its max_duration"


# what each gate's decision depends on (the other settings are kept for stored specs only)
_DECIDING = {
    "error_rate": ("max_ratio", "max_increase"),
    "latency": ("quantile", "max_ratio"),
    "output_drift": ("method", "delta"),
    "quality": ("metric", "max_decrease", "max_increase"),
    "input_drift": ("delta", "max_share"),
}


_LEFT_OUT_WHEN_DEFAULT = {"error_rate": {"max_ratio": 1.5}}  # not in a spec's canonical JSON


def _gate_text(name: str, settings: dict[str, Any]) -> str:
    settings = {**_LEFT_OUT_WHEN_DEFAULT.get(name, {}), **settings}
    shown = {k: settings[k] for k in _DECIDING.get(name, ()) if settings.get(k) is not None}
    if name == "quality" and not shown.get("max_increase"):
        shown.pop("max_increase", None)
    advisory = (
        settings.get("advisory")
        or (name == "output_drift" and "delta" not in shown)
        or (name == "input_drift" and settings.get("advisory") is not False)
    )
    text = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"{name} ({text}{', advisory' if advisory else ''})"


def format_plan(result: RolloutPlan) -> str:
    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds:g}s" if seconds < 120 else f"{seconds / 60:g}m"

    lines = [
        f"{result.model} {result.candidate} (v{result.candidate_version or '?'}) in "
        f"{result.environment}",
        f"  would: {result.would}",
        "  config: "
        + (
            f"v{result.config_version} (already applied)"
            if result.config_version is not None
            else "new config version"
        )
        + f", hash {result.config_hash[:12]}",
    ]
    if result.requires is not None:
        lines.append(
            f"  requires: the version succeeded in {result.requires} (if the model uses it)"
        )
    lines.append(f"  strategy: {result.strategy}")
    for number, step in enumerate(result.steps, 1):
        if step.shadow_fraction > 0:
            lines.append(
                f"    step {number}: shadow, {step.shadow_fraction:.0%} of requests mirrored, "
                f"until {step.min_requests} pairs and {duration(step.min_duration_s)}; "
                f"at most {duration(step.max_duration_s)}"
            )
            continue
        counted = "pinned requests (preview)" if step.weight_pct == 0 else "canary requests"
        lines.append(
            f"    step {number}: {step.weight_pct}% until {step.min_requests} {counted}"
            f" and {duration(step.min_duration_s)}; at most {duration(step.max_duration_s)}"
        )
    gates = ", ".join(
        _gate_text(name, settings) for gate in result.gates for name, settings in gate.items()
    )
    source = {"default": " (the default gates: the spec lists none)", "spec": "", "none": ""}
    lines.append(
        f"  gates: {gates or 'none'}{source[result.gates_from]}; inconclusive → "
        f"{result.on_inconclusive}"
    )
    if result.gates_from == "none":
        lines.append(
            "  warning: gates: none — nothing judges this rollout; every step passes on its "
            "floors alone"
        )
    lines.append(
        f"  least time: {duration(result.least_time_s)} and {result.least_canary_requests} "
        "canary requests"
    )
    most = duration(result.most_time_s) if result.most_time_s is not None else "unbounded"
    lines.append(f"  most time: {most} ({result.most_time_note})")
    if result.expected_note:
        lines.append(f"  expected: {result.expected_note}")
    lines.append(f"  approval: {result.approval}")
    lines.append(f"  watch: {result.watch}")
    lines += [f"  problem: {problem}" for problem in result.problems]
    return "\n".join(lines)
