"""The rollout state machine: one transition table, as data, and a pure ``decide``.

``TRANSITIONS`` maps ``(from_state, event)`` to a :class:`Rule` (the next state and the effects
that :mod:`rollout.effects` turns into actions). Nothing else moves a rollout.
``decide(rollout, evidence, now, command)`` picks the event, looks the rule up (an event the
table does not allow raises :class:`~rollout.errors.StateError`) and returns a
:class:`~rollout.lifecycle.Decision`: the next state, the actions, the reason and the evidence
(the values are in :mod:`rollout.lifecycle`). A decision whose ``event`` is None changes nothing.

Rules of ``decide`` (without a command):

- ``pending`` with nothing serving yet is an *initial release*: once the candidate's artifact is
  verified it gets all traffic and the alias at once (``succeeded``, release kind ``initial``).
  Otherwise ``pending`` begins verifying and stages the candidate (plan: candidate at 0%, so
  routers load it and only pinned requests reach it); ``verifying`` waits for verification
  evidence (digest, smoke tests through the router): pass → first step, fail → aborted.
- ``progressing``: a step is judged once the canary has ``min_requests`` in the step *and*
  ``min_duration_s`` has passed. Pass → next step, or after the last: ``awaiting_approval``
  (approval required, none given) or ``promoting``. Fail → ``rolling_back``. Inconclusive →
  ``on_inconclusive``: pause → ``paused``; rollback → ``rolling_back``; extend → keep waiting
  until ``max_duration_s``, then ``paused``. A step that reaches ``max_duration_s`` before it
  could be judged is inconclusive too. At 100% no baseline serves at the same time: the step is
  judged on the candidate's SLO and its history (``rollout.analysis.analyse_alone``) and, like
  every other step, advances only on a pass. A blue/green preview
  (0%) that asks for no pinned requests is judged by time: failing gates still fail it,
  inconclusive ones do not hold it.
- ``promoting`` waits for promotion evidence (the artifact digest still matches): pass →
  ``succeeded`` (the candidate becomes the baseline; alias moved; release kind ``promotion``),
  fail → ``rolling_back`` → ``rolled_back`` (release kind ``rollback``, outcome
  ``rolled_back``). An aborted rollout records kind ``promotion``, outcome ``aborted``.
- ``promoting`` with a watch (``watch_s`` > 0, from the spec's ``watch`` or the
  environment's): pass → ``watching`` (alias moved, release recorded, the previous version
  stays loaded at 0% beside the candidate at 100%). ``watching`` judges the release alone
  (evidence kind ``watch``): a fail → ``rolled_back`` at once (plan and alias back on the
  previous version, a release of kind ``rollback``); after ``watch_s`` without a fail →
  ``succeeded`` (the previous version unloaded). ``rollback`` ends the watch the same way as a
  fail, ``promote`` ends it early.
- ``awaiting_approval`` waits for an ``approve`` command; with an approval timeout, once the
  rollout has waited that long (since ``state_since``) its ``on_timeout`` applies: ``rollback``
  → ``rolling_back``, ``abort`` → ``aborted`` (traffic back on the baseline).

Commands (``promote`` forces promotion, ``rollback``, ``abort``, ``pause``, ``resume``,
``approve``) are events too. Separation of duties: only ``approve`` records an approval. A
forced ``promote`` skips the remaining steps but is never an approval: a rollout that needs
one (and has none) goes to ``awaiting_approval`` (event ``promote_needs_approval``, reason
"promotion forced by ...") and waits for the ``approve`` like any other, and ``promote`` while
``awaiting_approval`` is refused. Where ``distinct_approver`` is set (prod by default) the
approval, and a forced promotion of a rollout that needs one, must come from someone other
than the person who started the rollout. (Which roles may approve or force is the API's
rule: approver or admin where the environment requires an approval.) How the spec's and the
environment's approval settings combine is :meth:`~rollout.lifecycle.ApprovalPolicy.combine`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rollout.effects import with_effect
from rollout.errors import StateError
from rollout.lifecycle import (
    Command,
    CommandKind,
    Decision,
    Effect,
    Event,
    RolloutState,
    State,
    Step,
    StepEvidence,
)


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
    ("pending", "released"): _rule("succeeded", "finish_initial_release"),
    ("pending", "verification_failed"): _rule("aborted", "record_aborted"),
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
    ("promoting", "promoted_watching"): _rule("watching", "begin_watch"),
    ("watching", "watch_passed"): _rule("succeeded", "end_watch"),
    ("watching", "watch_failed"): _rule("rolled_back", "return_previous"),
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
    ("progressing", "promote"): _rule("promoting"),  # no approval needed: forced through
    ("paused", "promote"): _rule("promoting"),
    # a forced promotion of a rollout that needs an approval skips the steps, not the approval
    ("progressing", "promote_needs_approval"): _rule("awaiting_approval"),
    ("paused", "promote_needs_approval"): _rule("awaiting_approval"),
    ("progressing", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("paused", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("awaiting_approval", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("promoting", "rollback"): _rule("rolling_back", "restore_baseline"),
    ("watching", "rollback"): _rule("rolled_back", "return_previous"),
    ("watching", "promote"): _rule("succeeded", "end_watch"),  # the watch ended early
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
    if state == "pending" and rollout.baseline_version is None:
        return _initial_release(rollout, evidence, now)
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
            promoted = (
                f"v{rollout.candidate_version} promoted in {rollout.environment} "
                f"({evidence.reason})"
            )
            if rollout.watch_s > 0:
                return _apply(
                    rollout,
                    "promoted_watching",
                    now,
                    f"{promoted}; watching it for {_duration(rollout.watch_s)}, "
                    f"v{rollout.baseline_version} loaded beside it",
                    evidence,
                )
            return _apply(rollout, "promoted", now, promoted, evidence)
        return _apply(
            rollout, "promotion_failed", now, f"promotion stopped: {evidence.reason}", evidence
        )
    if state == "awaiting_approval":
        return _awaiting_approval(rollout, now)
    if state == "watching":
        return _watching(rollout, evidence, now)
    if state == "rolling_back":
        baseline = rollout.baseline_version
        return _apply(rollout, "reverted", now, f"traffic back on baseline v{baseline}")
    return _wait(rollout, f"rollout is {state}")


def _initial_release(rollout: RolloutState, evidence: StepEvidence | None, now: float) -> Decision:
    """Nothing serves in the environment yet: there is nothing to compare with, so a verified
    candidate gets all traffic and the alias at once."""
    where = rollout.environment
    if evidence is None:
        return _wait(rollout, f"verifying v{rollout.candidate_version} before it serves {where}")
    if evidence.verdict != "pass":
        return _apply(
            rollout, "verification_failed", now, f"verification failed: {evidence.reason}", evidence
        )
    return _apply(
        rollout,
        "released",
        now,
        f"initial release of v{rollout.candidate_version} in {where} by {rollout.started_by}",
    )


def _judged(step: Step, evidence: StepEvidence | None) -> StepEvidence | None:
    """The evidence as this kind of step is judged: a preview that asks for no pinned requests
    is judged by time (inconclusive gates do not hold it; failing ones still fail it). Every
    other step, 100% included (its SLO and history), advances only on a pass."""
    if evidence is None or evidence.verdict == "fail" or step.is_shadow:
        return evidence
    if step.is_preview and step.min_requests == 0 and evidence.verdict == "inconclusive":
        return replace(
            evidence,
            verdict="pass",
            reason=f"preview judged by time ({evidence.n_canary} pinned requests, too few for "
            f"the gates: {evidence.reason})",
        )
    return evidence


def _progress(rollout: RolloutState, evidence: StepEvidence | None, now: float) -> Decision:
    step = rollout.step
    evidence = _judged(step, evidence)
    number = f"step {rollout.step_index + 1}/{len(rollout.steps)} ({step.weight_pct}%)"
    started = rollout.step_started_at if rollout.step_started_at is not None else now
    elapsed_s = max(0.0, now - started)
    n_step = 0 if evidence is None else evidence.requests_in_step
    verdict = evidence.verdict if evidence is not None else "inconclusive"
    detail = evidence.reason if evidence is not None else "no evidence yet"
    if verdict == "fail":  # no floor delays a fail the evidence already shows
        return _apply(rollout, "gates_failed", now, f"{number} failed: {detail}", evidence)
    timed_out = step.max_duration_s is not None and elapsed_s >= step.max_duration_s
    floors = n_step >= step.min_requests and elapsed_s >= step.min_duration_s
    counted = (
        f"{n_step}/{step.min_requests} canary requests, {elapsed_s:.0f}/{step.min_duration_s:.0f}s"
    )
    if verdict == "pass" and not floors:
        if timed_out:
            return _inconclusive(
                rollout, evidence, now, f"{number}: {counted} at max_duration", timed_out=True
            )
        return _wait(rollout, f"waiting: {number} passed, floors not met: {counted}", evidence)
    if verdict == "inconclusive":
        over = n_step >= step.request_limit and rollout.on_inconclusive != "extend"
        if timed_out or over:
            limit = (
                f"max_duration {step.max_duration_s:g}s"
                if timed_out
                else f"max_requests {step.request_limit}"
            )
            return _inconclusive(
                rollout,
                evidence,
                now,
                f"{number} undecided at {limit}: {detail}",
                timed_out=timed_out,
            )
        return _wait(rollout, f"waiting: {number}: {counted}; {detail}", evidence)
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
    if rollout.approval.required and rollout.approved_by is None:
        return _apply(
            rollout,
            "approval_needed",
            now,
            f"{number} passed ({detail}); waiting for approval by "
            + (
                f"someone other than {rollout.started_by}"
                if rollout.approval.distinct_approver
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
    approval = rollout.approval
    who = (
        f"someone other than {rollout.started_by}" if approval.distinct_approver else "an approver"
    )
    timeout_s = approval.timeout_s
    if timeout_s is None:
        return _wait(rollout, f"waiting for approval by {who}")
    since = rollout.state_since if rollout.state_since is not None else now
    waited_s = max(0.0, now - since)
    if waited_s < timeout_s:
        return _wait(
            rollout,
            f"waiting for approval by {who}; {approval.on_timeout} in {timeout_s - waited_s:.0f}s",
        )
    reason = f"no approval within {timeout_s:g}s"
    if approval.on_timeout == "abort":
        return _apply(rollout, "approval_expired_abort", now, f"{reason}; aborted")
    return _apply(rollout, "approval_expired", now, f"{reason}; rolling back")


def _watching(rollout: RolloutState, evidence: StepEvidence | None, now: float) -> Decision:
    """The promoted release during its watch: a fail returns to the previous release at once;
    once ``watch_s`` has passed without one, the watch ends (an undecided gate does not hold
    it: the watch looks for harm, it does not need a proof of health)."""
    candidate, previous = rollout.candidate_version, rollout.baseline_version
    detail = evidence.reason if evidence is not None else "no evidence yet"
    if evidence is not None and evidence.verdict == "fail":
        return _apply(
            rollout,
            "watch_failed",
            now,
            f"v{candidate} failed its watch: {detail}; back to v{previous}",
            evidence,
        )
    started = rollout.step_started_at if rollout.step_started_at is not None else now
    left_s = rollout.watch_s - max(0.0, now - started)
    if left_s <= 0:
        return _apply(
            rollout,
            "watch_passed",
            now,
            f"v{candidate} watched for {_duration(rollout.watch_s)} without a failing gate "
            f"({detail}); v{previous} unloaded",
            evidence,
        )
    return _wait(rollout, f"watching, {_duration(left_s)} left: {detail}", evidence)


def _duration(seconds: float) -> str:
    """``seconds`` as people say it: 45 s, 12 min, 2 h 5 min."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def _command(rollout: RolloutState, command: Command, now: float) -> Decision:
    kind = command.kind
    if (
        kind in ("approve", "promote")
        and rollout.approval.distinct_approver
        and rollout.state in ("progressing", "paused", "awaiting_approval")
    ):
        needs_approval = rollout.approval.required and rollout.approved_by is None
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
    event: Event = kind
    if (
        kind == "promote"
        and rollout.state in ("progressing", "paused")
        and rollout.approval.required
        and rollout.approved_by is None
    ):
        event = "promote_needs_approval"
        who = (
            f"someone other than {rollout.started_by}"
            if rollout.approval.distinct_approver
            else "an approver"
        )
        reason += f"; remaining steps skipped, waiting for approval by {who}"
    return _apply(rollout, event, now, reason, actor=command.actor)


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
        decision = with_effect(decision, effect, rollout, now)
    return decision
