"""What a rule's effects do: the actions (plans, aliases, releases) a decision carries.

:func:`with_effect` adds one effect of a :class:`~rollout.machine.Rule` to a
:class:`~rollout.lifecycle.Decision`: the traffic plan of the next step, the baseline restored,
the release to record, the alias to move, the step clock restarted, the approver recorded.
:func:`return_to` gives the actions of the one move outside a rollout, ``rollback --to`` an
earlier release. :mod:`rollout.apply` carries the actions out, all in one transaction.
"""

from __future__ import annotations

from dataclasses import replace

from rollout.errors import StateError
from rollout.lifecycle import (
    Action,
    Decision,
    Effect,
    MoveAlias,
    RecordRelease,
    RolloutState,
    SetPlan,
)


def with_effect(decision: Decision, effect: Effect, rollout: RolloutState, now: float) -> Decision:
    def canary_at(index: int) -> SetPlan:
        step = rollout.steps[index]
        if step.is_shadow:
            return SetPlan(
                baseline_version=_baseline(rollout),
                sticky_key=rollout.sticky_key,
                rollout_id=rollout.id,
                shadow_version=rollout.candidate_version,
                shadow_fraction=step.shadow_fraction,
            )
        return SetPlan(
            baseline_version=_baseline(rollout),
            canary_version=rollout.candidate_version,
            canary_weight_pct=rollout.steps[index].weight_pct,
            sticky_key=rollout.sticky_key,
            rollout_id=rollout.id,
        )

    actions = decision.actions
    if effect == "stage_candidate":
        staged = SetPlan(
            baseline_version=_baseline(rollout),
            canary_version=rollout.candidate_version,
            canary_weight_pct=0,
            sticky_key=rollout.sticky_key,
            rollout_id=rollout.id,
        )
        return replace(decision, actions=(*actions, staged))
    if effect == "first_step":
        return replace(
            decision, step_index=0, step_started_at=now, actions=(*actions, canary_at(0))
        )
    if effect == "next_step":
        index = rollout.step_index + 1
        return replace(
            decision, step_index=index, step_started_at=now, actions=(*actions, canary_at(index))
        )
    if effect == "restart_step":
        return replace(decision, step_started_at=now)
    if effect == "restore_baseline":
        plan = SetPlan(baseline_version=_baseline(rollout), sticky_key=rollout.sticky_key)
        return replace(decision, actions=(*actions, plan))
    if effect == "record_approval":
        distinct = not rollout.approval.distinct_approver or decision.actor != rollout.started_by
        if distinct and rollout.approved_by is None:
            return replace(decision, approved_by=decision.actor)
        return decision
    if effect == "finish_initial_release":
        candidate = rollout.candidate_version
        return replace(
            decision,
            actions=(
                *actions,
                RecordRelease("initial", candidate, None, "succeeded"),
                SetPlan(baseline_version=candidate, sticky_key=rollout.sticky_key),
                MoveAlias(alias=rollout.environment, version=candidate),
            ),
        )
    if effect == "finish_promotion":
        candidate = rollout.candidate_version
        return replace(
            decision,
            actions=(
                *actions,
                SetPlan(baseline_version=candidate, sticky_key=rollout.sticky_key),
                MoveAlias(alias=rollout.environment, version=candidate),
                RecordRelease("promotion", candidate, rollout.baseline_version, "succeeded"),
            ),
        )
    if effect == "begin_watch":
        candidate = rollout.candidate_version
        watched = SetPlan(
            baseline_version=_baseline(rollout),
            canary_version=candidate,
            canary_weight_pct=100,
            sticky_key=rollout.sticky_key,
            rollout_id=rollout.id,
        )
        return replace(
            decision,
            step_started_at=now,
            actions=(
                *actions,
                watched,
                MoveAlias(alias=rollout.environment, version=candidate),
                RecordRelease("promotion", candidate, rollout.baseline_version, "succeeded"),
            ),
        )
    if effect == "end_watch":
        plan = SetPlan(baseline_version=rollout.candidate_version, sticky_key=rollout.sticky_key)
        return replace(decision, actions=(*actions, plan))
    if effect == "return_previous":
        previous = _baseline(rollout)
        return replace(
            decision,
            actions=(
                *actions,
                SetPlan(baseline_version=previous, sticky_key=rollout.sticky_key),
                MoveAlias(alias=rollout.environment, version=previous),
                RecordRelease("rollback", previous, rollout.candidate_version, "succeeded"),
            ),
        )
    # The candidate's record: a rolled-back rollout is a rollback (its canary was taken out);
    # an aborted one stays the promotion that was attempted, ended early.
    release = (
        RecordRelease(
            "rollback", rollout.candidate_version, rollout.baseline_version, "rolled_back"
        )
        if effect == "record_rolled_back"
        else RecordRelease(
            "promotion", rollout.candidate_version, rollout.baseline_version, "aborted"
        )
    )
    return replace(decision, actions=(*actions, release))


def _baseline(rollout: RolloutState) -> str:
    if rollout.baseline_version is None:
        raise StateError(f"rollout {rollout.id} has no baseline version to route traffic to")
    return rollout.baseline_version


def return_to(
    *, serving: str, version: str, release_id: int, sticky_key: str | None, environment: str
) -> tuple[Action, ...]:
    """``rollback --to``: the actions that make ``version`` (of release ``release_id``) serve
    again where ``serving`` does: the plan, the alias, and a release of kind ``rollback``."""
    if version == serving:
        raise StateError(
            f"release {release_id} is v{version}, which is already serving in {environment}"
        )
    return (
        RecordRelease("rollback", version, serving, "succeeded"),
        SetPlan(baseline_version=version, sticky_key=sticky_key),
        MoveAlias(alias=environment, version=version),
    )
