"""The state machine: one test case per rule of the transition table, then the details.

``CASES`` holds, for every ``(from_state, event)`` of ``TRANSITIONS``, the inputs that make
``decide`` take exactly that rule; ``test_every_rule_has_a_case`` keeps the two in step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

from rollout.errors import StateError
from rollout.lifecycle import (
    DEFAULT_MAX_REQUESTS,
    ApprovalPolicy,
    Command,
    CommandKind,
    MoveAlias,
    RecordRelease,
    RolloutState,
    SetPlan,
    State,
    Step,
    StepEvidence,
)
from rollout.machine import TRANSITIONS, decide, transition

T0 = 1_000.0
STEPS = (
    Step(weight_pct=10, min_requests=100),
    Step(weight_pct=50, min_requests=100, min_duration_s=60.0, max_duration_s=600.0),
    Step(weight_pct=100, min_requests=100),
)
PASS = StepEvidence(verdict="pass", n_baseline=900, n_canary=100, reason="all 4 gates pass")
FAIL = StepEvidence(verdict="fail", n_baseline=900, n_canary=100, reason="error_rate fail")
INCONCLUSIVE = StepEvidence(
    verdict="inconclusive", n_baseline=900, n_canary=100, reason="quality inconclusive"
)
VERIFIED = StepEvidence(verdict="pass", kind="verify", reason="digest matches")
LIMITED = (replace(STEPS[0], max_requests=100), *STEPS[1:])  # step 1 decides within 100
TAMPERED = StepEvidence(verdict="fail", kind="verify", reason="artifact changed")


APPROVAL_FIELDS = {
    "approval_required": "required",
    "distinct_approver": "distinct_approver",
    "approval_timeout_s": "timeout_s",
    "on_approval_timeout": "on_timeout",
}


def rollout(state: State, **changes: Any) -> RolloutState:
    """A rollout in ``state``; approval settings go by their old flat names into the policy."""
    approval = {APPROVAL_FIELDS[k]: changes.pop(k) for k in list(changes) if k in APPROVAL_FIELDS}
    changes["approval"] = ApprovalPolicy(**approval)
    base = RolloutState(
        id="r1",
        model="bc",
        environment="prod",
        baseline_version="1",
        candidate_version="2",
        state=state,
        steps=STEPS,
        step_index=0,
        step_started_at=T0,
        started_by="alice",
        sticky_key="header:x-user-id",
    )
    return replace(base, **changes)


def cmd(kind: CommandKind, actor: str = "bob") -> Command:
    return Command(kind=kind, actor=actor)


# (from_state, event) -> (rollout, evidence, now, command)
CASES: dict[tuple[str, str], tuple[RolloutState, StepEvidence | None, float, Command | None]] = {
    ("pending", "begin"): (rollout("pending"), None, T0, None),
    ("pending", "released"): (rollout("pending", baseline_version=None), VERIFIED, T0, None),
    ("pending", "verification_failed"): (
        rollout("pending", baseline_version=None),
        TAMPERED,
        T0,
        None,
    ),
    ("verifying", "verified"): (rollout("verifying"), VERIFIED, T0, None),
    ("verifying", "verification_failed"): (rollout("verifying"), TAMPERED, T0, None),
    ("progressing", "step_passed"): (rollout("progressing"), PASS, T0 + 1, None),
    ("progressing", "steps_passed"): (rollout("progressing", step_index=2), PASS, T0 + 1, None),
    ("progressing", "approval_needed"): (
        rollout("progressing", step_index=2, approval_required=True),
        PASS,
        T0 + 1,
        None,
    ),
    ("progressing", "gates_failed"): (rollout("progressing"), FAIL, T0 + 1, None),
    ("progressing", "inconclusive"): (  # undecided at the step's max_requests
        rollout("progressing", steps=LIMITED),
        INCONCLUSIVE,
        T0 + 1,
        None,
    ),
    ("progressing", "step_timed_out"): (
        rollout("progressing", step_index=1),
        replace(PASS, n_canary=5),
        T0 + 600,
        None,
    ),
    ("progressing", "inconclusive_rollback"): (
        rollout("progressing", steps=LIMITED, on_inconclusive="rollback"),
        INCONCLUSIVE,
        T0 + 1,
        None,
    ),
    ("promoting", "promoted"): (rollout("promoting"), replace(VERIFIED, kind="promote"), T0, None),
    ("promoting", "promotion_failed"): (
        rollout("promoting"),
        replace(TAMPERED, kind="promote"),
        T0,
        None,
    ),
    ("promoting", "promoted_watching"): (
        rollout("promoting", watch_s=1800.0),
        replace(VERIFIED, kind="promote"),
        T0,
        None,
    ),
    ("watching", "watch_passed"): (rollout("watching", watch_s=1800.0), None, T0 + 1800, None),
    ("watching", "watch_failed"): (
        rollout("watching", watch_s=1800.0),
        replace(FAIL, kind="watch"),
        T0 + 1,
        None,
    ),
    ("watching", "rollback"): (rollout("watching"), None, T0, cmd("rollback")),
    ("watching", "promote"): (rollout("watching"), None, T0, cmd("promote")),
    ("rolling_back", "reverted"): (rollout("rolling_back"), None, T0, None),
    ("awaiting_approval", "approval_expired"): (
        rollout("awaiting_approval", approval_timeout_s=60.0, state_since=T0),
        None,
        T0 + 60,
        None,
    ),
    ("awaiting_approval", "approval_expired_abort"): (
        rollout(
            "awaiting_approval",
            approval_timeout_s=60.0,
            on_approval_timeout="abort",
            state_since=T0,
        ),
        None,
        T0 + 61,
        None,
    ),
    ("progressing", "pause"): (rollout("progressing"), None, T0, cmd("pause")),
    ("paused", "resume"): (rollout("paused"), None, T0, cmd("resume")),
    ("awaiting_approval", "approve"): (rollout("awaiting_approval"), None, T0, cmd("approve")),
    ("progressing", "promote"): (rollout("progressing"), None, T0, cmd("promote")),
    ("paused", "promote"): (rollout("paused"), None, T0, cmd("promote")),
    ("progressing", "promote_needs_approval"): (
        rollout("progressing", approval_required=True),
        None,
        T0,
        cmd("promote", actor="bob"),
    ),
    ("paused", "promote_needs_approval"): (
        rollout("paused", approval_required=True),
        None,
        T0,
        cmd("promote", actor="bob"),
    ),
    ("progressing", "rollback"): (rollout("progressing"), None, T0, cmd("rollback")),
    ("paused", "rollback"): (rollout("paused"), None, T0, cmd("rollback")),
    ("awaiting_approval", "rollback"): (rollout("awaiting_approval"), None, T0, cmd("rollback")),
    ("promoting", "rollback"): (rollout("promoting"), None, T0, cmd("rollback")),
    ("pending", "abort"): (rollout("pending"), None, T0, cmd("abort")),
    ("verifying", "abort"): (rollout("verifying"), None, T0, cmd("abort")),
    ("progressing", "abort"): (rollout("progressing"), None, T0, cmd("abort")),
    ("paused", "abort"): (rollout("paused"), None, T0, cmd("abort")),
    ("awaiting_approval", "abort"): (rollout("awaiting_approval"), None, T0, cmd("abort")),
    ("promoting", "abort"): (rollout("promoting"), None, T0, cmd("abort")),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(TRANSITIONS)


@pytest.mark.parametrize("rule", list(CASES), ids=lambda rule: f"{rule[0]}-{rule[1]}")
def test_rule(rule: tuple[str, str]) -> None:
    state, evidence, now, command = CASES[rule]
    decision = decide(state, evidence, now, command)
    assert (decision.from_state, decision.event) == rule
    assert decision.to_state == TRANSITIONS[rule].to_state  # type: ignore[index]


# -- illegal transitions --

ALL_STATES: tuple[State, ...] = get_args(State)
ILLEGAL_COMMANDS = [
    (state, kind)
    for state in ALL_STATES
    for kind in get_args(CommandKind)
    if (state, kind) not in TRANSITIONS
]


@pytest.mark.parametrize(("state", "kind"), ILLEGAL_COMMANDS)
def test_illegal_command_raises_state_error(state: State, kind: CommandKind) -> None:
    with pytest.raises(StateError, match=f"'{kind}' is not allowed for a rollout that is {state}"):
        decide(rollout(state), None, T0, cmd(kind))


def test_illegal_event_names_the_allowed_ones() -> None:
    allowed = r"\(allowed: abort, promote, promote_needs_approval, resume, rollback\)"
    with pytest.raises(StateError, match=allowed):
        transition("paused", "approve")
    with pytest.raises(StateError, match="it has finished"):
        transition("succeeded", "rollback")


# -- waiting --


def test_waits_below_min_requests() -> None:
    decision = decide(rollout("progressing"), replace(PASS, n_canary=40), T0 + 5, None)
    assert decision.event is None
    assert decision.to_state == "progressing"
    assert decision.actions == ()
    assert "40/100 canary requests" in decision.reason


def test_waits_for_min_duration_even_with_enough_requests() -> None:
    state = rollout("progressing", step_index=1)
    assert decide(state, PASS, T0 + 59, None).event is None
    assert decide(state, PASS, T0 + 60, None).event == "step_passed"


def test_a_fail_rolls_back_before_the_step_meets_its_floors() -> None:
    """Floors (min_requests, min_duration) never delay a fail the evidence already shows."""
    decision = decide(rollout("progressing", step_index=1), replace(FAIL, n_canary=7), T0, None)
    assert (decision.event, decision.to_state) == ("gates_failed", "rolling_back")


def test_a_pass_waits_for_the_floors_and_an_undecided_step_for_its_limits() -> None:
    early = decide(rollout("progressing", step_index=1), PASS, T0 + 30, None)
    assert early.event is None and "floors not met" in early.reason  # 30/60 s
    assert decide(rollout("progressing", step_index=1), PASS, T0 + 60, None).event == "step_passed"
    rollout_wide = replace(INCONCLUSIVE, n_canary=10**6, step_requests=500)
    undecided = decide(rollout("progressing"), rollout_wide, T0 + 1)
    assert undecided.event is None  # below the default max_requests (100,000 in the step)
    assert "inconclusive" not in undecided.to_state
    at_limit = replace(INCONCLUSIVE, step_requests=DEFAULT_MAX_REQUESTS)
    assert decide(rollout("progressing"), at_limit, T0 + 1).to_state == "paused"


def test_extend_waits_until_max_duration_then_pauses() -> None:
    state = rollout("progressing", step_index=1, on_inconclusive="extend")
    waiting = decide(state, replace(INCONCLUSIVE, step_requests=10**6), T0 + 100, None)
    assert waiting.event is None  # extend: past max_requests, until max_duration
    expired = decide(state, INCONCLUSIVE, T0 + 600, None)
    assert (expired.event, expired.to_state) == ("step_timed_out", "paused")


def test_extend_without_max_duration_keeps_waiting() -> None:
    state = rollout("progressing", on_inconclusive="extend")
    assert decide(state, INCONCLUSIVE, T0 + 86_400, None).event is None


def test_timeout_with_rollback_policy_rolls_back() -> None:
    state = rollout("progressing", step_index=1, on_inconclusive="rollback")
    decision = decide(state, replace(PASS, n_canary=3), T0 + 600, None)
    assert (decision.event, decision.to_state) == ("inconclusive_rollback", "rolling_back")


def test_verifying_and_promoting_wait_for_evidence() -> None:
    assert decide(rollout("verifying"), None, T0, None).event is None
    assert decide(rollout("promoting"), None, T0, None).event is None


@pytest.mark.parametrize("state", ["succeeded", "rolled_back", "aborted", "paused"])
def test_resting_states_do_nothing_without_a_command(state: State) -> None:
    decision = decide(rollout(state), PASS, T0 + 1, None)
    assert decision.event is None
    assert decision.to_state == state


# -- actions --


def test_verified_puts_the_canary_at_the_first_weight() -> None:
    decision = decide(rollout("verifying", step_started_at=None), VERIFIED, T0 + 3, None)
    assert decision.actions == (
        SetPlan(
            baseline_version="1",
            canary_version="2",
            canary_weight_pct=10,
            sticky_key="header:x-user-id",
            rollout_id="r1",
        ),
    )
    assert (decision.step_index, decision.step_started_at) == (0, T0 + 3)
    assert decision.evidence is VERIFIED


def test_step_passed_moves_to_the_next_weight_and_restarts_the_clock() -> None:
    decision = decide(rollout("progressing"), PASS, T0 + 30, None)
    assert decision.actions == (
        SetPlan("1", "2", 50, sticky_key="header:x-user-id", rollout_id="r1"),
    )
    assert (decision.step_index, decision.step_started_at) == (1, T0 + 30)
    assert decision.evidence is PASS


def test_promoted_moves_plan_alias_and_records_the_release() -> None:
    decision = decide(rollout("promoting"), replace(VERIFIED, kind="promote"), T0, None)
    assert decision.actions == (
        SetPlan(baseline_version="2", sticky_key="header:x-user-id"),
        MoveAlias(alias="prod", version="2"),
        RecordRelease(kind="promotion", version="2", previous_version="1", outcome="succeeded"),
    )


def test_a_watched_promotion_keeps_the_previous_version_loaded_and_starts_the_clock() -> None:
    decision = decide(
        rollout("promoting", watch_s=1800.0, step_index=2), replace(VERIFIED, kind="promote"), T0
    )
    assert decision.to_state == "watching"
    assert decision.step_started_at == T0
    assert decision.actions == (
        SetPlan(
            baseline_version="1",
            canary_version="2",
            canary_weight_pct=100,
            sticky_key="header:x-user-id",
            rollout_id="r1",
        ),
        MoveAlias(alias="prod", version="2"),
        RecordRelease(kind="promotion", version="2", previous_version="1", outcome="succeeded"),
    )
    assert "watching it for 30 min" in decision.reason


def test_the_watch_waits_saying_the_time_left_and_ignores_an_undecided_gate() -> None:
    watching = rollout("watching", watch_s=1800.0)
    decision = decide(watching, replace(INCONCLUSIVE, kind="watch"), T0 + 18 * 60)
    assert decision.event is None
    assert decision.reason.startswith("watching, 12 min left")
    ended = decide(watching, replace(INCONCLUSIVE, kind="watch"), T0 + 1800)
    assert (ended.event, ended.to_state) == ("watch_passed", "succeeded")
    assert ended.actions == (SetPlan(baseline_version="2", sticky_key="header:x-user-id"),)


@pytest.mark.parametrize("command", [None, "rollback"])
def test_a_failed_watch_returns_plan_and_alias_to_the_previous_release(
    command: CommandKind | None,
) -> None:
    watching = rollout("watching", watch_s=1800.0)
    looked = None if command else replace(FAIL, kind="watch")
    decision = decide(watching, looked, T0 + 60, cmd(command) if command else None)
    assert decision.to_state == "rolled_back"
    assert decision.actions == (
        SetPlan(baseline_version="1", sticky_key="header:x-user-id"),
        MoveAlias(alias="prod", version="1"),
        RecordRelease(kind="rollback", version="1", previous_version="2", outcome="succeeded"),
    )
    if command is None:
        assert decision.evidence is looked
        assert "failed its watch: error_rate fail; back to v1" in decision.reason


def test_failed_gates_restore_the_baseline_with_the_evidence() -> None:
    decision = decide(rollout("progressing"), FAIL, T0 + 1, None)
    assert decision.actions == (SetPlan(baseline_version="1", sticky_key="header:x-user-id"),)
    assert decision.evidence is FAIL
    assert "error_rate fail" in decision.reason


def test_reverted_records_a_rolled_back_release() -> None:
    decision = decide(rollout("rolling_back"), None, T0, None)
    assert decision.actions == (RecordRelease("rollback", "2", "1", "rolled_back"),)


@pytest.mark.parametrize(
    ("state", "evidence", "command"),
    [
        ("progressing", "fail", None),  # gates failed
        ("promoting", "tampered", None),  # the promotion check failed
        ("paused", None, "rollback"),  # rolled back by hand
        ("awaiting_approval", None, "rollback"),
    ],
)
def test_every_road_to_rolled_back_records_kind_rollback(
    state: State, evidence: str | None, command: CommandKind | None
) -> None:
    looked = {"fail": FAIL, "tampered": replace(TAMPERED, kind="promote"), None: None}[evidence]
    first = decide(rollout(state), looked, T0 + 1, cmd(command) if command else None)
    assert first.to_state == "rolling_back"
    assert not [a for a in first.actions if isinstance(a, RecordRelease)]
    reverted = decide(rollout("rolling_back"), None, T0 + 1, None)
    (release,) = [a for a in reverted.actions if isinstance(a, RecordRelease)]
    assert (reverted.to_state, release.kind, release.outcome) == (
        "rolled_back",
        "rollback",
        "rolled_back",
    )
    assert (release.version, release.previous_version) == ("2", "1")


def test_an_aborted_rollout_stays_a_promotion_attempt() -> None:
    decision = decide(rollout("progressing"), None, T0, cmd("abort"))
    (release,) = [a for a in decision.actions if isinstance(a, RecordRelease)]
    assert (decision.to_state, release.kind, release.outcome) == ("aborted", "promotion", "aborted")


def test_abort_with_traffic_restores_the_baseline_and_records() -> None:
    decision = decide(rollout("paused"), None, T0, cmd("abort"))
    assert decision.actions == (
        SetPlan(baseline_version="1", sticky_key="header:x-user-id"),
        RecordRelease("promotion", "2", "1", "aborted"),
    )
    assert decision.actor == "bob"


def test_abort_before_traffic_only_records() -> None:
    decision = decide(rollout("pending"), None, T0, cmd("abort"))
    assert decision.actions == (RecordRelease("promotion", "2", "1", "aborted"),)


def test_begin_stages_the_candidate_at_zero_percent() -> None:
    decision = decide(rollout("pending"), None, T0, None)
    assert decision.actions == (
        SetPlan(
            baseline_version="1",
            canary_version="2",
            canary_weight_pct=0,
            sticky_key="header:x-user-id",
            rollout_id="r1",
        ),
    )


@pytest.mark.parametrize("how", ["abort", "failed"])
def test_leaving_verification_unstages_the_candidate(how: str) -> None:
    state = rollout("verifying")
    if how == "abort":
        decision = decide(state, None, T0, cmd("abort"))
    else:
        decision = decide(state, TAMPERED, T0, None)
    assert decision.actions == (
        SetPlan(baseline_version="1", sticky_key="header:x-user-id"),
        RecordRelease("promotion", "2", "1", "aborted"),
    )


def test_resume_restarts_the_step_clock() -> None:
    decision = decide(rollout("paused", step_index=1), None, T0 + 500, cmd("resume"))
    assert (decision.step_index, decision.step_started_at) == (1, T0 + 500)
    assert decision.actions == ()


def test_pause_keeps_the_traffic_as_it_is() -> None:
    assert decide(rollout("progressing"), None, T0, cmd("pause")).actions == ()


# -- approvals --


def test_approval_by_the_starter_is_refused() -> None:
    with pytest.raises(StateError, match="someone other than alice"):
        decide(rollout("awaiting_approval"), None, T0, cmd("approve", actor="alice"))


def test_approval_by_someone_else_is_recorded() -> None:
    decision = decide(rollout("awaiting_approval"), None, T0, cmd("approve", actor="bob"))
    assert decision.approved_by == "bob"
    assert decision.to_state == "promoting"


def test_forced_promotion_needing_approval_is_refused_for_the_starter() -> None:
    state = rollout("progressing", approval_required=True)
    with pytest.raises(StateError, match="someone other than alice"):
        decide(state, None, T0, cmd("promote", actor="alice"))


def test_forced_promotion_is_not_an_approval() -> None:
    """Attack 4: a second deployer's forced promote in prod counted as the approval and
    skipped the remaining steps straight to promoting. Now it skips the steps, not the
    approval: the rollout waits for an approve, and a promote while waiting is refused."""
    state = rollout("progressing", approval_required=True, distinct_approver=True)
    forced = decide(state, None, T0, cmd("promote", actor="bob"))
    assert (forced.event, forced.to_state, forced.approved_by) == (
        "promote_needs_approval",
        "awaiting_approval",
        None,
    )
    assert forced.reason == (
        "promotion forced by bob; remaining steps skipped, waiting for approval by someone "
        "other than alice"
    )
    waiting = replace(state, state="awaiting_approval")
    with pytest.raises(StateError, match=r"'promote' is not allowed .* awaiting_approval"):
        decide(waiting, None, T0, cmd("promote", actor="bob"))
    with pytest.raises(StateError, match="someone other than alice"):
        decide(waiting, None, T0, cmd("approve", actor="alice"))
    approved = decide(waiting, None, T0, cmd("approve", actor="carol"))
    assert (approved.to_state, approved.approved_by) == ("promoting", "carol")


def test_forced_promotion_where_no_approval_is_needed_records_no_approver() -> None:
    decision = decide(rollout("paused"), None, T0, cmd("promote", actor="bob"))
    assert (decision.event, decision.to_state, decision.approved_by) == (
        "promote",
        "promoting",
        None,
    )
    assert decision.reason == "promotion forced by bob"


def test_forced_promotion_without_approval_rule_is_allowed_for_the_starter() -> None:
    decision = decide(rollout("progressing"), None, T0, cmd("promote", actor="alice"))
    assert (decision.to_state, decision.approved_by) == ("promoting", None)


def test_given_approval_skips_awaiting_approval() -> None:
    state = rollout("progressing", step_index=2, approval_required=True, approved_by="bob")
    assert decide(state, PASS, T0 + 1, None).event == "steps_passed"


def test_decide_is_pure() -> None:
    state = rollout("progressing")
    assert decide(state, PASS, T0 + 1, None) == decide(state, PASS, T0 + 1, None)
    assert state == rollout("progressing")


# -- approval policy --


def test_awaiting_approval_waits_until_the_timeout() -> None:
    state = rollout("awaiting_approval", approval_timeout_s=60.0, state_since=T0)
    decision = decide(state, None, T0 + 59, None)
    assert decision.event is None
    assert decision.reason == "waiting for approval by someone other than alice; rollback in 1s"
    assert decide(rollout("awaiting_approval"), None, T0 + 10**6, None).event is None


def test_approval_timeout_restores_the_baseline() -> None:
    state = rollout("awaiting_approval", approval_timeout_s=60.0, state_since=T0)
    decision = decide(state, None, T0 + 60, None)
    assert decision.to_state == "rolling_back"
    assert decision.reason == "no approval within 60s; rolling back"
    assert decision.actions == (SetPlan(baseline_version="1", sticky_key="header:x-user-id"),)


def test_approval_timeout_can_abort() -> None:
    state = rollout(
        "awaiting_approval", approval_timeout_s=5.0, on_approval_timeout="abort", state_since=T0
    )
    decision = decide(state, None, T0 + 5, None)
    assert (decision.to_state, decision.reason) == ("aborted", "no approval within 5s; aborted")
    assert decision.actions[-1] == RecordRelease("promotion", "2", "1", "aborted")


def test_self_approval_is_allowed_where_the_approver_need_not_differ() -> None:
    state = rollout("awaiting_approval", environment="dev", distinct_approver=False)
    decision = decide(state, None, T0, cmd("approve", actor="alice"))
    assert (decision.to_state, decision.approved_by) == ("promoting", "alice")
    waiting = decide(
        rollout("progressing", step_index=2, approval_required=True, distinct_approver=False),
        PASS,
        T0 + 1,
        None,
    )
    assert waiting.reason.endswith("waiting for approval by an approver")


def test_a_shadow_step_mirrors_instead_of_routing() -> None:
    steps = (Step(weight_pct=0, min_requests=50, shadow_fraction=0.5), Step(weight_pct=100))
    decision = decide(rollout("verifying", steps=steps), VERIFIED, T0, None)
    assert decision.actions == (
        SetPlan(
            baseline_version="1",
            sticky_key="header:x-user-id",
            rollout_id="r1",
            shadow_version="2",
            shadow_fraction=0.5,
        ),
    )
    following = decide(rollout("progressing", steps=steps), PASS, T0 + 1, None)
    assert following.actions[0] == SetPlan(
        baseline_version="1",
        canary_version="2",
        canary_weight_pct=100,
        sticky_key="header:x-user-id",
        rollout_id="r1",
    )


# -- rules that live in decide: the initial release, the 100% step, the preview by time --


def test_an_initial_release_serves_the_verified_candidate_at_once() -> None:
    first = rollout("pending", baseline_version=None)
    assert decide(first, None, T0).event is None  # waits for its verification
    decision = decide(first, VERIFIED, T0)
    assert (decision.event, decision.to_state) == ("released", "succeeded")
    assert decision.reason == "initial release of v2 in prod by alice"
    assert decision.actions == (
        RecordRelease("initial", "2", None, "succeeded"),
        SetPlan(baseline_version="2", sticky_key="header:x-user-id"),
        MoveAlias(alias="prod", version="2"),
    )
    refused = decide(first, TAMPERED, T0)
    assert (refused.to_state, refused.actions) == (
        "aborted",
        (RecordRelease("promotion", "2", None, "aborted"),),
    )


def test_a_full_weight_step_advances_only_on_a_pass() -> None:
    """At 100% the candidate's SLO and history judge: requests alone never promote it, a fail
    rolls back, and a pass promotes once the floors are met."""
    last = rollout("progressing", step_index=2)
    counted = StepEvidence(verdict="inconclusive", n_baseline=3, n_canary=500, reason="counted")
    assert decide(last, counted, T0 + 1).event is None  # enough requests, nothing proven: waits
    failed = decide(last, replace(counted, verdict="fail", reason="slo_error_rate fail"), T0 + 1)
    assert (failed.event, failed.to_state) == ("gates_failed", "rolling_back")
    passed = replace(counted, verdict="pass", n_canary=99, reason="all 3 blocking gates pass")
    assert decide(last, passed, T0 + 1).event is None  # 99/100 requests: waits
    decision = decide(last, replace(passed, n_canary=100), T0 + 1)
    assert (decision.event, decision.to_state) == ("steps_passed", "promoting")


PREVIEW = (Step(weight_pct=0, min_requests=0, min_duration_s=60.0), Step(weight_pct=100))


def test_a_preview_without_a_request_floor_is_judged_by_time() -> None:
    preview = rollout("progressing", steps=PREVIEW)
    few = StepEvidence(verdict="inconclusive", n_canary=3, reason="too little data")
    assert decide(preview, few, T0 + 59).event is None  # before its duration
    decision = decide(preview, few, T0 + 60)
    assert (decision.event, decision.step_index) == ("step_passed", 1)
    assert decision.evidence is not None and decision.evidence.verdict == "pass"
    assert "preview judged by time (3 pinned requests" in decision.evidence.reason
    failed = decide(preview, replace(few, verdict="fail", reason="chi_square fail"), T0 + 60)
    assert failed.event == "gates_failed"  # failing gates still stop it
    floor = rollout("progressing", steps=(replace(PREVIEW[0], min_requests=10), PREVIEW[1]))
    held = decide(floor, replace(few, n_canary=10), T0 + 60)
    assert held.event is None  # with a request floor the gates must pass: it keeps waiting


def test_approvals_combine_the_spec_the_environment_and_a_shadow_recommendation() -> None:
    def policy(**given: Any) -> ApprovalPolicy:
        values: dict[str, Any] = {
            "spec_required": False,
            "environment_required": False,
            "recommendation_only": False,
            "distinct_approver": True,
            "spec_timeout_s": None,
            "environment_timeout_s": None,
            "spec_on_timeout": None,
            "environment_on_timeout": "rollback",
        }
        return ApprovalPolicy.combine(**{**values, **given})

    assert not policy().required
    assert policy(spec_required=True).required
    assert policy(environment_required=True).required
    assert policy(recommendation_only=True).required
    both = policy(spec_timeout_s=60.0, environment_timeout_s=3600.0, spec_on_timeout="abort")
    assert (both.timeout_s, both.on_timeout) == (60.0, "abort")
    assert policy(environment_timeout_s=3600.0).timeout_s == 3600.0


def test_returning_to_a_release_sets_plan_alias_and_a_rollback_record() -> None:
    from rollout.effects import return_to

    actions = return_to(serving="3", version="1", release_id=7, sticky_key=None, environment="prod")
    assert actions == (
        RecordRelease("rollback", "1", "3", "succeeded"),
        SetPlan(baseline_version="1"),
        MoveAlias(alias="prod", version="1"),
    )
    with pytest.raises(StateError, match="release 7 is v3, which is already serving in prod"):
        return_to(serving="3", version="3", release_id=7, sticky_key=None, environment="prod")
