"""The lifecycle's vocabulary: states, events and effects, and the values ``decide`` takes and
returns (:mod:`rollout.machine` holds the transition table and the decision itself).

Inputs: :class:`RolloutState` (one rollout as the machine sees it, with its :class:`Step` list
and :class:`ApprovalPolicy`), :class:`StepEvidence` (what one look found) and a
:class:`Command`. Output: a :class:`Decision` with the next state and the :data:`Action` list
(:class:`SetPlan`, :class:`MoveAlias`, :class:`RecordRelease`) that :mod:`rollout.apply` carries
out. Nothing here does I/O or imports more than the standard library at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from monitors import GateResult, Verdict

State = Literal[
    "pending",
    "verifying",
    "progressing",
    "paused",
    "awaiting_approval",
    "promoting",
    "watching",
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
    "watching",
    "rolling_back",
)
CommandKind = Literal["promote", "rollback", "abort", "pause", "resume", "approve"]
Event = Literal[
    "begin",
    "released",
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
    "promoted_watching",
    "watch_passed",
    "watch_failed",
    "promotion_failed",
    "approval_expired",
    "approval_expired_abort",
    "reverted",
    "promote",
    "promote_needs_approval",  # a forced promote of a rollout still waiting for its approval
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
    "finish_initial_release",  # plan: candidate alone; alias → candidate; release: initial
    "finish_promotion",  # plan: candidate alone; alias → candidate; release recorded
    # plan: candidate at 100%, the previous version loaded beside it; alias → candidate;
    # release recorded; the watch's clock starts
    "begin_watch",
    "end_watch",  # plan: candidate alone (the previous version unloaded)
    "return_previous",  # plan: previous alone; alias → previous; release: rollback to it
    "record_rolled_back",  # candidate's release recorded: kind rollback, outcome rolled_back
    "record_aborted",  # candidate's release recorded: kind promotion, outcome aborted
]
OnInconclusive = Literal["pause", "extend", "rollback"]
# canary requests a step may take to decide before on_inconclusive applies (a step's
# max_requests overrides it): enough for the default gates to pass an equal candidate in 19 of
# 20 rollouts at a 10% or a 50% first step (bench/decisions.py)
DEFAULT_MAX_REQUESTS = 100_000
OnApprovalTimeout = Literal["rollback", "abort"]
ReleaseKind = Literal["initial", "promotion", "rollback"]
ReleaseOutcome = Literal["succeeded", "rolled_back", "aborted"]
EvidenceKind = Literal["step", "verify", "promote", "watch"]


# -- inputs --


@dataclass(frozen=True)
class Step:
    """One step: the canary's share of traffic, or (``shadow_fraction`` > 0) a shadow step that
    mirrors that share of requests to the candidate, which answers nobody (weight 0). A
    non-shadow step at 0% is a blue/green preview: the candidate serves only pinned requests."""

    weight_pct: int
    min_requests: int = 100
    min_duration_s: float = 0.0
    max_duration_s: float | None = None
    shadow_fraction: float = 0.0
    max_requests: int | None = None  # None: DEFAULT_MAX_REQUESTS

    @property
    def request_limit(self) -> int:
        """Canary requests after which an undecided step applies ``on_inconclusive``."""
        return self.max_requests if self.max_requests is not None else DEFAULT_MAX_REQUESTS

    @property
    def is_shadow(self) -> bool:
        return self.shadow_fraction > 0

    @property
    def is_preview(self) -> bool:
        return self.weight_pct == 0 and not self.is_shadow


@dataclass(frozen=True)
class ApprovalPolicy:
    """Whether promotion waits for an approval, from whom, and for how long
    (:meth:`combine`: the spec's and the environment's settings together)."""

    required: bool = False
    distinct_approver: bool = True  # the approver must not be who started the rollout
    timeout_s: float | None = None  # how long awaiting_approval may last; None: for ever
    on_timeout: OnApprovalTimeout = "rollback"

    @classmethod
    def combine(
        cls,
        *,
        spec_required: bool,
        environment_required: bool,
        recommendation_only: bool,
        distinct_approver: bool,
        spec_timeout_s: float | None,
        environment_timeout_s: float | None,
        spec_on_timeout: OnApprovalTimeout | None,
        environment_on_timeout: OnApprovalTimeout,
    ) -> ApprovalPolicy:
        """The rule: either the spec or the environment may require an approval (and a shadow
        step that ends in a recommendation always does); the spec's timeout and what happens
        then override the environment's; who may approve is the environment's."""
        return cls(
            required=spec_required or environment_required or recommendation_only,
            distinct_approver=distinct_approver,
            timeout_s=spec_timeout_s if spec_timeout_s is not None else environment_timeout_s,
            on_timeout=spec_on_timeout or environment_on_timeout,
        )


@dataclass(frozen=True)
class RolloutState:
    """What ``decide`` needs to know about one rollout."""

    id: str
    model: str
    environment: str
    baseline_version: str | None  # None: nothing serves there yet (an initial release)
    candidate_version: str
    state: State
    steps: tuple[Step, ...]
    step_index: int = 0
    step_started_at: float | None = None
    on_inconclusive: OnInconclusive = "pause"
    approval: ApprovalPolicy = ApprovalPolicy()
    started_by: str = "unknown"
    approved_by: str | None = None
    sticky_key: str | None = None
    state_since: float | None = None  # when the rollout entered its current state
    watch_s: float = 0.0  # how long a promoted release is watched (0: not at all)

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
    step), ``promote`` (before the alias moves) or ``watch`` (the promoted release, alone,
    during its watch).
    """

    verdict: Verdict
    gates: tuple[GateResult, ...] = ()
    n_baseline: int = 0
    n_canary: int = 0
    reason: str = ""
    kind: EvidenceKind = "step"
    step_index: int | None = None
    weight_pct: int | None = None
    window_start: float | None = None
    report: str | None = None  # path of the Evidently drift report of this look, if written
    step_requests: int | None = None  # canary requests in the current step (None: n_canary)

    @property
    def requests_in_step(self) -> int:
        return self.n_canary if self.step_requests is None else self.step_requests

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
            "step_requests": self.step_requests,
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
    kind: ReleaseKind
    version: str
    previous_version: str | None
    outcome: ReleaseOutcome


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
