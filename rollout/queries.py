"""What people read: a model's status in an environment, its releases, a rollout's story.

Reads only; nothing here writes. :meth:`Queries.status` is what ``rollout status`` and
``GET .../status`` show: the traffic plan, the version the environment's alias points at (as
the manager last set it: the newest release there that succeeded), the active rollout (else the
latest one) with its events, and, while a step is under way, the evidence so far and what the
state machine would decide now. It needs neither the model registry nor a write, so it stays
quick.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from contract.clock import Clock
from contract.plans import PlanStore, TrafficPlan
from rollout.environments import Environments
from rollout.errors import NoSuchRollout
from rollout.evidence import Evidence
from rollout.lifecycle import RolloutState, StepEvidence
from rollout.machine import decide
from rollout.store.records import EventRecord, RecordStore, Release, RolloutRecord
from rollout.stored import machine_state


@dataclass(frozen=True)
class Status:
    model: str
    environment: str
    plan: TrafficPlan | None
    alias_version: str | None
    rollout: RolloutRecord | None  # the active rollout, else the latest one
    live: StepEvidence | None = None  # the current step's evidence so far (progressing only)
    next_move: str | None = None  # what decide would say now
    events: tuple[EventRecord, ...] = field(default_factory=tuple)
    # the canary requests this step needs to pass an equal candidate (rollout/forecast.py),
    # and how long that is at the canary's rate so far
    expected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "plan": asdict(self.plan) if self.plan is not None else None,
            "alias_version": self.alias_version,
            "rollout": self.rollout.to_dict() if self.rollout is not None else None,
            "live": self.live.to_dict() if self.live is not None else None,
            "next_move": self.next_move,
            "events": [event.to_dict() for event in self.events],
            "expected": self.expected,
        }


class Queries:
    def __init__(
        self,
        records: RecordStore,
        plans: PlanStore,
        environments: Environments,
        evidence: Evidence,
        clock: Clock,
    ) -> None:
        self.records = records
        self.plans = plans
        self.environments = environments
        self.evidence = evidence
        self.clock = clock

    def status(self, model: str, environment: str) -> Status:
        plan = self.plans.get(environment, model)
        alias = self.released_version(model, environment)
        record = self.records.active(model, environment) or self.records.latest(model, environment)
        if record is None:
            return Status(model, environment, plan, alias, None)
        live: StepEvidence | None = None
        next_move: str | None = None
        expected: str | None = None
        if record.active:
            state = machine_state(record, self.environments.get(record.environment))
            now = self.clock.time()
            if state.state == "progressing":
                decision = decide(state, self.evidence.look(record, state, now), now)
                live, next_move = decision.evidence, decision.reason
                expected = _expected(record, state, live, now)
            elif state.state == "watching":  # "watching, 12 min left: …"
                decision = decide(state, self.evidence.look(record, state, now), now)
                live, next_move = decision.evidence, decision.reason
            elif state.state == "awaiting_approval":
                next_move = decide(state, None, now).reason
        events = tuple(self.records.events(record.id))
        return Status(model, environment, plan, alias, record, live, next_move, events, expected)

    def released_version(self, model: str, environment: str) -> str | None:
        """The version the manager last made current here (and pointed ``@environment`` at)."""
        for release in self.records.releases(model, environment):
            if release.outcome == "succeeded":
                return release.version
        return None

    def history(self, model: str, environment: str) -> list[Release]:
        """Release records, newest first."""
        return self.records.releases(model, environment)

    def rollout(self, rollout_id: str) -> RolloutRecord:
        record = self.records.get(rollout_id)
        if record is None:
            raise NoSuchRollout(f"no rollout with id {rollout_id!r}")
        return record

    def active(self, model: str, environment: str) -> RolloutRecord | None:
        return self.records.active(model, environment)

    def latest(self, model: str, environment: str) -> RolloutRecord | None:
        return self.records.latest(model, environment)

    def requests(self, rollout_id: str, since_ts: float = 0.0) -> dict[str, int]:
        """Requests per arm the rollout's routers logged since ``since_ts``."""
        return self.evidence.predictions.count(rollout_id, since_ts)

    def events(self, rollout_id: str) -> list[EventRecord]:
        self.rollout(rollout_id)
        return self.records.events(rollout_id)

    def report(self, rollout_id: str) -> dict[str, Any]:
        """The rollout, every transition with its evidence, and the releases it made."""
        record = self.rollout(rollout_id)
        releases = [
            release.to_dict()
            for release in self.records.releases(record.model, record.environment)
            if release.rollout_id == rollout_id
        ]
        return {
            "rollout": record.to_dict(),
            "events": [event.to_dict() for event in self.records.events(rollout_id)],
            "releases": releases,
        }


def _expected(
    record: RolloutRecord, state: RolloutState, live: StepEvidence | None, now: float
) -> str | None:
    """What the forecast says of the current split step, with the time it means at the
    canary's rate over the window so far."""
    from rollout.forecast import BaseRates

    step = state.step
    if live is not None and step.weight_pct >= 100 and not step.is_shadow:
        return _expected_alone(record, state, live, now)
    if live is None or not 0 < step.weight_pct < 100 or step.is_shadow:
        return None
    split = [s.weight_pct for s in state.steps if 0 < s.weight_pct < 100 and not s.is_shadow]
    smallest = min(split) / 100
    needed = _forecast(record.spec, step.weight_pct / 100, min(smallest, 1 - smallest))
    if needed is None:
        return None
    text = f"about {needed:,} canary requests in the rollout to pass {BaseRates().describe()}"
    return text + _so_far(needed, live.n_canary, live.window_start, now)


def _so_far(needed: int, seen: int, started: float | None, now: float) -> str:
    """How far along, and the time left at the canary's rate since ``started``."""
    if started is None or now <= started or seen <= 0:
        return ""
    rate = seen / (now - started)
    left = max(0, needed - seen)
    return f"; {seen:,} so far, {left / rate:,.0f} s more at {rate:.3g}/s"


def _expected_alone(
    record: RolloutRecord, state: RolloutState, live: StepEvidence, now: float
) -> str | None:
    """What the forecast says of a step where the candidate serves alone (its SLO and its
    history against the baseline's requests before the switch)."""
    from rollout.forecast import BaseRates

    before = max((g.n_baseline for g in live.gates if g.gate.endswith("_history")), default=0)
    needed = _forecast_alone(record.spec, int(float(f"{before:.2g}")))  # a few cached sizes
    if needed is None:
        return None
    text = (
        f"about {needed:,} canary requests at {state.step.weight_pct}% to pass its SLO and "
        f"history ({BaseRates().describe()})"
    )
    return text + _so_far(needed, live.n_canary, state.step_started_at, now)


@lru_cache(maxsize=64)
def _forecast_alone(spec_json: str, baseline_before: int) -> int | None:
    from rollout.forecast import requests_to_pass_alone
    from rollout.stored import parse_spec

    return requests_to_pass_alone(parse_spec(spec_json).analysis, baseline_before)


@lru_cache(maxsize=64)
def _forecast(spec_json: str, share: float, min_share: float) -> int | None:
    """The forecast of a stored spec at a share: the same for every status of a step."""
    from rollout.forecast import requests_to_pass
    from rollout.stored import parse_spec

    return requests_to_pass(parse_spec(spec_json).analysis, share, min_share)
