"""A stored rollout as the state machine sees it.

A rollout row keeps its spec as canonical JSON (:meth:`RolloutSpec.canonical_json`);
:func:`parse_spec` parses it once per process. :func:`machine_state` joins the row, its spec and
its environment's policy into the :class:`~rollout.lifecycle.RolloutState` that
:func:`rollout.machine.decide` takes. :func:`bind_spec` fills a spec with the model, candidate
and environment a command names (they must agree with the spec's own).
"""

from __future__ import annotations

from functools import lru_cache
from typing import cast

from rollout.environments import Environment
from rollout.errors import SpecError
from rollout.lifecycle import ApprovalPolicy, RolloutState, State
from rollout.spec import RolloutSpec
from rollout.store.records import RolloutRecord


@lru_cache(maxsize=256)
def parse_spec(spec_json: str) -> RolloutSpec:
    """The stored (canonical JSON) spec, parsed once."""
    return RolloutSpec.model_validate_json(spec_json)


def machine_state(record: RolloutRecord, policy: Environment) -> RolloutState:
    """``record`` as :func:`~rollout.machine.decide` sees it, under its environment's policy."""
    spec = parse_spec(record.spec)
    return RolloutState(
        id=record.id,
        model=record.model,
        environment=record.environment,
        baseline_version=record.baseline_version,
        candidate_version=record.candidate_version,
        state=cast(State, record.state),
        steps=spec.steps(),
        step_index=record.step_index,
        step_started_at=record.step_started_at,
        on_inconclusive=spec.analysis.on_inconclusive,
        approval=approval_of(spec, policy),
        started_by=record.started_by,
        approved_by=record.approved_by,
        sticky_key=spec.strategy.sticky_key,
        state_since=record.updated_at,
        watch_s=spec.watch_s if spec.watch_s is not None else policy.watch_s,
    )


def approval_of(spec: RolloutSpec, policy: Environment) -> ApprovalPolicy:
    """The approval a rollout of ``spec`` needs under ``policy``."""
    shadow = spec.strategy.shadow
    return ApprovalPolicy.combine(
        spec_required=spec.approval.required,
        environment_required=policy.approval_required,
        recommendation_only=shadow is not None and shadow.then == "stop",
        distinct_approver=policy.distinct_approver,
        spec_timeout_s=spec.approval.timeout_s,
        environment_timeout_s=policy.approval_timeout_s,
        spec_on_timeout=spec.approval.on_timeout,
        environment_on_timeout=policy.on_approval_timeout,
    )


def bind_spec(spec: RolloutSpec, model: str, candidate: str | int, environment: str) -> RolloutSpec:
    """The spec with the command's model, candidate and environment; they must agree."""
    given = {"model": model, "candidate": str(candidate), "environment": environment}
    for name, value in given.items():
        in_spec = getattr(spec, name)
        if in_spec is not None and str(in_spec) != value:
            raise SpecError(f"{name}: the spec says {in_spec!r} but the command says {value!r}")
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return RolloutSpec.model_validate({**data, **given})
    except ValueError as exc:
        raise SpecError(
            f"candidate: expected a version number or '@alias', got {candidate!r}"
        ) from exc
