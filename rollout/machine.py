"""The rollout state machine: one transition table, as data, and a pure ``decide``.

``TRANSITIONS`` maps ``(from_state, event)`` to a :class:`Rule` (the next state and the effects
that turn into actions). Nothing else moves a rollout. ``decide(rollout, evidence, now,
command)`` picks the event, looks the rule up (an event the table does not allow raises
:class:`~rollout.errors.StateError`) and returns a :class:`Decision`: the next state, the actions
to apply (:class:`SetPlan`, :class:`MoveAlias`, :class:`RecordRelease`), the reason and the
evidence. A decision whose ``event`` is None changes nothing (the rollout keeps waiting).

Rules of ``decide`` (without a command):

- ``pending`` begins verifying and stages the candidate (plan: candidate at 0%, so routers load
  it and it is reachable only by pinning); ``verifying`` waits for verification evidence
  (digest, smoke tests through the router): pass → first step (plan: canary at step 0's
  weight), fail → aborted (plan: the baseline alone).
- ``progressing``: a step is judged once the canary has ``min_requests`` in the step *and*
  ``min_duration_s`` has passed. Pass → next step, or after the last: ``awaiting_approval``
  (approval required, none given) or ``promoting``. Fail → ``rolling_back``. Inconclusive →
  ``on_inconclusive``: pause → ``paused``; rollback → ``rolling_back``; extend → keep waiting until
  ``max_duration_s``, then ``paused``. A step that reaches ``max_duration_s`` before it could be
  judged is inconclusive too.
- ``promoting`` waits for promotion evidence (the artifact digest still matches): pass →
  ``succeeded`` (plan: candidate becomes the baseline; alias moved; release recorded, kind
  ``promotion``), fail → ``rolling_back``. ``rolling_back`` → ``rolled_back`` (the candidate's
  release recorded with kind ``rollback``, outcome ``rolled_back``). An aborted rollout records
  the candidate's release with kind ``promotion``, outcome ``aborted``.
- ``awaiting_approval`` waits for an ``approve`` command; with ``approval_timeout_s`` set, once
  the rollout has waited that long (since ``state_since``) ``on_approval_timeout`` applies:
  ``rollback`` → ``rolling_back``, ``abort`` → ``aborted`` (traffic back on the baseline).

Commands (``promote`` forces promotion, ``rollback``, ``abort``, ``pause``, ``resume``,
``approve``) are events too; where ``distinct_approver`` is set (prod by default) an approval
(or a forced promotion of a rollout that needs one) must come from someone other than the
person who started the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from monitors import GateResult, Verdict
from rollout.errors import StateError

State = Literal[
    "pending",
    "verifying",
    "progressing",
    "paused",
    "awaiting_approval",
    "promoting",
    "succeeded",
    "rolling_back",
    "rolled_back",
    "aborted",
]
TERMINAL_STATES: frozenset[State] = frozenset({"succeeded", "rolled_back", "aborted"})
ACTIVE_STATES: tuple[State, ...] = (
    "pending",
    "verifying",
    "progressing",
    "paused",
    "awaiting_approval",
    "promoting",
    "rolling_back",
)
CommandKind = Literal["promote", "rollback", "abort", "pause", "resume", "approve"]
Event = Literal[
    "begin",
    "verified",
    "verification_failed",
    "step_passed",
    "steps_passed",
    "approval_needed",
    "gates_failed",
    "inconclusive",
    "step_timed_out",
    "inconclusive_rollback",
    "promoted",
    "promotion_failed",
    "approval_expired",
    "approval_expired_abort",
    "reverted",
    "promote",
    "rollback",
    "abort",
    "pause",
    "resume",
    "approve",
]
Effect = Literal[
    "stage_candidate",  # plan: candidate loaded at 0% (reachable only by pinning, for smoke tests)
    "first_step",  # plan: canary at step 0's weight; step clock starts
    "next_step",  # plan: canary at the next step's weight; step clock restarts
    "restart_step",  # step clock restarts (evidence is gathered afresh)
    "restore_baseline",  # plan: the baseline alone
    "record_approval",  # approved_by = the actor (when it is not the starter)
    "finish_promotion",  # plan: candidate alone; alias → candidate; release recorded
    "record_rolled_back",  # candidate's release recorded: kind rollback, outcome rolled_back
    "record_aborted",  # candidate's release recorded: kind promotion, outcome aborted
]


@dataclass(frozen=True)
class Rule:
    to_state: State
    effects: tuple[Effect, ...] = ()


def _rule(to_state: State, *effects: Effect) -> Rule:
    return Rule(to_state, effects)


# The one table of allowed transitions.
TRANSITIONS: dict[tuple[State, Event], Rule] = {
    # lifecycle, driven by evidence and time
    ("pending", "begin"): _rule("verifying", "stage_candidate"),
    ("verifying", "verified"): _rule("progressing", "first_step"),
    ("verifying", "verification_failed"): _rule("aborted", "restore_baseline", "record_aborted"),
    ("progressing", "step_passed"): _rule("progressing", "next_step"),
    ("progressing", "steps_passed"): _rule("promoting"),
    ("progressing", "approval_needed"): _rule("awaiting_approval"),
    ("progressing", "gates_failed"): _rule("rolling_back", "restore_baseline"),
    ("progressing", "inconclusive"): _rule("paused"),
    ("progressing", "step_timed_out"): _rule("paused"),
    ("progressing", "inconclusive_rollback"): _rule("rolling_back", "restore_baseline"),
    ("promoting", "promoted"): _rule("succeeded", "finish_promotion"),
    ("promoting", "promotion_failed"): _rule("rolling_back", "restore_baseline"),
    ("awaiting_approval", "approval_expired"): _rule("rolling_back", "restore_baseline"),
    ("awaiting_approval", "approval_expired_abort"): _rule(
        "aborted", "restore_baseline", "record_aborted"
    ),
    ("rolling_back", "reverted"): _rule("rolled_back", "record_rolled_back"),
    # commands
    ("progressing", "pause"): _rule("paused"),
    ("paused", "resume"): _rule("progressing", "restart_step"),
    ("awaiting_approval", "approve"): _rule("promoting", "record_approval"),
    ("progressing", "promote"): _rule("promoting", "record_approval"),
    ("paused", "promote"): _rule("promoting", "record_approval"),
    ("awaiting_approval", "promote"): _rule("promoting", "record_approval"),
    ("progressing", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("paused", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("awaiting_approval", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("promoting", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("pending", "abort"): _rule("aborted", "record_aborted"),
    ("verifying", "abort"): _rule("aborted", "restore_baseline", "record_aborted"),
    ("progressing", "abort"): _rule("aborted", "restore_baseline", "record_aborted"),
    ("paused", "abort"): _rule("aborted", "restore_baseline", "record_aborted"),
    ("awaiting_approval", "abort"): _rule("aborted", "restore_baseline", "record_aborted"),
    ("promoting", "abort"): _rule("aborted", "restore_baseline", "record_aborted"),
}


def transition(state: State, event: Event) -> Rule:
    """The rule for ``event`` in ``state``; StateError if the table does not allow it."""
    rule = TRANSITIONS.get((state, event))
    if rule is None:
        allowed = sorted(e for (s, e) in TRANSITIONS if s == state)
        raise StateError(
            f"{event!r} is not allowed for a rollout that is {state}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (it has finished)")
        )
    return rule


# -- inputs --


@dataclass(frozen=True)
class Step:
    """One step: the canary's share of traffic, or (``shadow_fraction`` > 0) a shadow step that
    mirrors that share of requests to the candidate, which answers nobody (weight 0)."""

    weight_pct: int
    min_requests: int = 100
    min_duration_s: float = 0.0
    max_duration_s: float | None = None
    shadow_fraction: float = 0.0

    @property
    def is_shadow(self) -> bool:
        return self.shadow_fraction > 0


@dataclass(frozen=True)
class RolloutState:
    """What ``decide`` needs to know about one rollout."""

    id: str
    model: str
    environment: str
    baseline_version: str | None
    candidate_version: str
    state: State
    steps: tuple[Step, ...]
    step_index: int = 0
    step_started_at: float | None = None
    on_inconclusive: Literal["pause", "extend", "rollback"] = "pause"
    approval_required: bool = False
    started_by: str = "unknown"
    approved_by: str | None = None
    sticky_key: str | None = None
    distinct_approver: bool = True  # the approver must not be who started the rollout
    approval_timeout_s: float | None = None  # how long awaiting_approval may last
    on_approval_timeout: Literal["rollback", "abort"] = "rollback"
    state_since: float | None = None  # when the rollout entered its current state

    @property
    def step(self) -> Step:
        return self.steps[min(self.step_index, len(self.steps) - 1)]

    @property
    def is_last_step(self) -> bool:
        return self.step_index >= len(self.steps) - 1


@dataclass(frozen=True)
class StepEvidence:
    """The analysis of one look: per-gate results, their combined verdict and the counts.

    ``kind`` says what was checked: ``step`` (canary gates), ``verify`` (before the first
    step) or ``promote`` (before the alias moves).
    """

    verdict: Verdict
    gates: tuple[GateResult, ...] = ()
    n_baseline: int = 0
    n_canary: int = 0
    reason: str = ""
    kind: Literal["step", "verify", "promote"] = "step"
    step_index: int | None = None
    weight_pct: int | None = None
    window_start: float | None = None
    report: str | None = None  # path of the Evidently drift report of this look, if written

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "reason": self.reason,
            "step_index": self.step_index,
            "weight_pct": self.weight_pct,
            "window_start": self.window_start,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "gates": [gate.to_dict() for gate in self.gates],
            "report": self.report,
        }


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    actor: str
    reason: str | None = None


# -- outputs --


@dataclass(frozen=True)
class SetPlan:
    baseline_version: str
    canary_version: str | None = None
    canary_weight_pct: int = 0
    sticky_key: str | None = None
    rollout_id: str | None = None
    shadow_version: str | None = None
    shadow_fraction: float = 0.0


@dataclass(frozen=True)
class MoveAlias:
    alias: str
    version: str


@dataclass(frozen=True)
class RecordRelease:
    kind: Literal["initial", "promotion", "rollback"]
    version: str
    previous_version: str | None
    outcome: Literal["succeeded", "rolled_back", "aborted"]


Action = SetPlan | MoveAlias | RecordRelease


@dataclass(frozen=True)
class Decision:
    from_state: State
    to_state: State
    event: Event | None  # None: nothing happens, the rollout keeps waiting
    reason: str
    actor: str = "manager"
    actions: tuple[Action, ...] = ()
    evidence: StepEvidence | None = None
    step_index: int = 0
    step_started_at: float | None = None
    approved_by: str | None = None

    @property
    def changed(self) -> bool:
        return self.event is not None


# -- the decision --


def decide(
    rollout: RolloutState,
    evidence: StepEvidence | None,
    now: float,
    command: Command | None = None,
) -> Decision:
    """The next move for ``rollout``; pure: same inputs, same decision."""
    if command is not None:
        return _command(rollout, command, now)
    state = rollout.state
    if state == "pending":
        return _apply(rollout, "begin", now, "verifying the candidate before it gets traffic")
    if state == "verifying":
        if evidence is None:
            return _wait(rollout, "waiting for verification")
        if evidence.verdict == "pass":
            step = rollout.steps[0]
            return _apply(
                rollout,
                "verified",
                now,
                f"verified ({evidence.reason}); step 1/{len(rollout.steps)}: "
                f"canary v{rollout.candidate_version} at {step.weight_pct}%",
                evidence=evidence,
            )
        return _apply(
            rollout, "verification_failed", now, f"verification failed: {evidence.reason}", evidence
        )
    if state == "progressing":
        return _progress(rollout, evidence, now)
    if state == "promoting":
        if evidence is None:
            return _wait(rollout, "waiting for the promotion check")
        if evidence.verdict == "pass":
            return _apply(
                rollout,
                "promoted",
                now,
                f"v{rollout.candidate_version} promoted in {rollout.environment} "
                f"({evidence.reason})",
                evidence,
            )
        return _apply(
            rollout, "promotion_failed", now, f"promotion stopped: {evidence.reason}", evidence
        )
    if state == "awaiting_approval":
        return _awaiting_approval(rollout, now)
    if state == "rolling_back":
        baseline = rollout.baseline_version
        return _apply(rollout, "reverted", now, f"traffic back on baseline v{baseline}")
    return _wait(rollout, f"rollout is {state}")


def _progress(rollout: RolloutState, evidence: StepEvidence | None, now: float) -> Decision:
    step = rollout.step
    number = f"step {rollout.step_index + 1}/{len(rollout.steps)} ({step.weight_pct}%)"
    started = rollout.step_started_at if rollout.step_started_at is not None else now
    elapsed_s = max(0.0, now - started)
    n_canary = evidence.n_canary if evidence is not None else 0
    timed_out = step.max_duration_s is not None and elapsed_s >= step.max_duration_s
    ready = n_canary >= step.min_requests and elapsed_s >= step.min_duration_s
    if not ready:
        waiting = (
            f"{number}: {n_canary}/{step.min_requests} canary requests, "
            f"{elapsed_s:.0f}/{step.min_duration_s:.0f}s"
        )
        if timed_out:
            return _inconclusive(
                rollout,
                evidence,
                now,
                f"{waiting} at max_duration {step.max_duration_s:g}s",
                timed_out=True,
            )
        return _wait(rollout, f"waiting: {waiting}", evidence)
    assert evidence is not None or step.min_requests == 0
    verdict = evidence.verdict if evidence is not None else "inconclusive"
    detail = evidence.reason if evidence is not None else "no evidence"
    if verdict == "fail":
        return _apply(rollout, "gates_failed", now, f"{number} failed: {detail}", evidence)
    if verdict == "inconclusive":
        if rollout.on_inconclusive == "extend" and not timed_out:
            return _wait(rollout, f"{number} inconclusive, extending: {detail}", evidence)
        return _inconclusive(
            rollout, evidence, now, f"{number} inconclusive: {detail}", timed_out=timed_out
        )
    if not rollout.is_last_step:
        following = rollout.steps[rollout.step_index + 1]
        return _apply(
            rollout,
            "step_passed",
            now,
            f"{number} passed ({detail}); step {rollout.step_index + 2}/{len(rollout.steps)}: "
            f"canary at {following.weight_pct}%",
            evidence,
        )
    if rollout.approval_required and rollout.approved_by is None:
        return _apply(
            rollout,
            "approval_needed",
            now,
            f"{number} passed ({detail}); waiting for approval by "
            + (
                f"someone other than {rollout.started_by}"
                if rollout.distinct_approver
                else "an approver"
            ),
            evidence,
        )
    return _apply(rollout, "steps_passed", now, f"all steps passed ({detail}); promoting", evidence)


def _inconclusive(
    rollout: RolloutState,
    evidence: StepEvidence | None,
    now: float,
    reason: str,
    *,
    timed_out: bool,
) -> Decision:
    if rollout.on_inconclusive == "rollback":
        return _apply(rollout, "inconclusive_rollback", now, f"{reason}; rolling back", evidence)
    event: Event = "step_timed_out" if timed_out else "inconclusive"
    return _apply(rollout, event, now, f"{reason}; paused", evidence)


def _awaiting_approval(rollout: RolloutState, now: float) -> Decision:
    who = f"someone other than {rollout.started_by}" if rollout.distinct_approver else "an approver"
    timeout_s = rollout.approval_timeout_s
    if timeout_s is None:
        return _wait(rollout, f"waiting for approval by {who}")
    since = rollout.state_since if rollout.state_since is not None else now
    waited_s = max(0.0, now - since)
    if waited_s < timeout_s:
        return _wait(
            rollout,
            f"waiting for approval by {who}; {rollout.on_approval_timeout} in "
            f"{timeout_s - waited_s:.0f}s",
        )
    reason = f"no approval within {timeout_s:g}s"
    if rollout.on_approval_timeout == "abort":
        return _apply(rollout, "approval_expired_abort", now, f"{reason}; aborted")
    return _apply(rollout, "approval_expired", now, f"{reason}; rolling back")


def _command(rollout: RolloutState, command: Command, now: float) -> Decision:
    kind = command.kind
    if (
        kind in ("approve", "promote")
        and rollout.distinct_approver
        and rollout.state in ("progressing", "paused", "awaiting_approval")
    ):
        needs_approval = rollout.approval_required and rollout.approved_by is None
        if (kind == "approve" or needs_approval) and command.actor == rollout.started_by:
            raise StateError(
                f"approval of rollout {rollout.id} must come from someone other than "
                f"{rollout.started_by}, who started it"
            )
    default_reasons: dict[CommandKind, str] = {
        "promote": "promotion forced",
        "rollback": "rollback requested",
        "abort": "aborted",
        "pause": "paused",
        "resume": f"resumed; step {rollout.step_index + 1} restarts",
        "approve": "approved",
    }
    reason = f"{default_reasons[kind]} by {command.actor}"
    if command.reason:
        reason += f": {command.reason}"
    return _apply(rollout, kind, now, reason, actor=command.actor)


def _wait(rollout: RolloutState, reason: str, evidence: StepEvidence | None = None) -> Decision:
    return Decision(
        from_state=rollout.state,
        to_state=rollout.state,
        event=None,
        reason=reason,
        evidence=evidence,
        step_index=rollout.step_index,
        step_started_at=rollout.step_started_at,
        approved_by=rollout.approved_by,
    )


def _apply(
    rollout: RolloutState,
    event: Event,
    now: float,
    reason: str,
    evidence: StepEvidence | None = None,
    actor: str = "manager",
) -> Decision:
    rule = transition(rollout.state, event)
    decision = Decision(
        from_state=rollout.state,
        to_state=rule.to_state,
        event=event,
        reason=reason,
        actor=actor,
        evidence=evidence,
        step_index=rollout.step_index,
        step_started_at=rollout.step_started_at,
        approved_by=rollout.approved_by,
    )
    for effect in rule.effects:
        decision = _effect(decision, effect, rollout, now)
    return decision


def _effect(decision: Decision, effect: Effect, rollout: RolloutState, now: float) -> Decision:
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
        distinct = not rollout.distinct_approver or decision.actor != rollout.started_by
        if distinct and rollout.approved_by is None:
            return replace(decision, approved_by=decision.actor)
        return decision
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


__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Action",
    "Command",
    "Decision",
    "MoveAlias",
    "RecordRelease",
    "RolloutState",
    "Rule",
    "SetPlan",
    "State",
    "Step",
    "StepEvidence",
    "decide",
    "transition",
]
