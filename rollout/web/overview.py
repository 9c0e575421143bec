"""What the overview page shows: every model x environment the store knows, one row each.

Reads only, every query bounded: at most :data:`MAX_PAIRS` (model, environment) pairs, found in
the traffic plans, the rollouts and the releases; for each the serving version (the newest
release that succeeded), the active rollout (else the latest), its phase, the canary weight of
the plan, its age, the last verdict (an active rollout's newest kept look, else its last
decision's stored evidence) and the alpha its blocking gates spent (each gate's share is
committed at the start, so it is the sum of their alphas: the spec's ``analysis.alpha``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, union

from contract.sql.schema import releases, rollouts, traffic_plans
from rollout.store.looks import LookRecord
from rollout.store.page_samples import last_evidence
from rollout.store.records import RolloutRecord
from rollout.stored import parse_spec

if TYPE_CHECKING:
    from rollout.manager import Manager

MAX_PAIRS = 500


@dataclass(frozen=True)
class Row:
    model: str
    environment: str
    serving_version: str | None
    rollout: RolloutRecord | None  # the active rollout, else the latest one
    weight_pct: int | None  # the canary's share of the plan now
    age_s: float | None
    verdict: str | None  # of the newest stored evidence
    alpha_spent: float | None

    @property
    def active(self) -> bool:
        return self.rollout is not None and self.rollout.active


def pairs(engine: Engine, limit: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """Every (model, environment) with a plan, a rollout or a release, sorted; at most
    ``limit``."""
    found = union(
        select(traffic_plans.c.model, traffic_plans.c.environment),
        select(rollouts.c.model, rollouts.c.environment),
        select(releases.c.model, releases.c.environment),
    ).subquery()
    query = select(found.c.model, found.c.environment).order_by(found.c.model, found.c.environment)
    with engine.connect() as conn:
        return [(str(m), str(e)) for m, e in conn.execute(query.limit(limit))]


def weights(engine: Engine) -> dict[tuple[str, str], int]:
    """The canary weight of every plan (0 where nothing but the baseline serves)."""
    query = select(
        traffic_plans.c.model, traffic_plans.c.environment, traffic_plans.c.canary_weight_pct
    ).limit(MAX_PAIRS)
    with engine.connect() as conn:
        return {(str(m), str(e)): int(w or 0) for m, e, w in conn.execute(query)}


def serving_version(engine: Engine, model: str, environment: str) -> str | None:
    query = (
        select(releases.c.version)
        .where(
            releases.c.model == model,
            releases.c.environment == environment,
            releases.c.outcome == "succeeded",
        )
        .order_by(releases.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else str(found)


def alpha_spent(evidence: Mapping[str, Any] | None, rollout: RolloutRecord) -> float:
    """The sum of the blocking gates' alphas in the stored evidence, else the spec's alpha:
    each blocking gate's share is committed when the rollout starts, looks spend no more."""
    shares = [
        float(gate["alpha"])
        for gate in (evidence or {}).get("gates", ())
        if gate.get("blocking", True) and isinstance(gate.get("alpha"), int | float)
    ]
    return sum(shares) if shares else parse_spec(rollout.spec).analysis.alpha


def look_verdict(look: LookRecord) -> str:
    """A look's verdict over its blocking gates: fail if one fails, pass if all pass."""
    verdicts = {gate.verdict for gate in look.gates if gate.blocking}
    if "fail" in verdicts:
        return "fail"
    return "pass" if verdicts == {"pass"} else "inconclusive"


def last_verdict(
    manager: Manager, record: RolloutRecord, evidence: Mapping[str, Any] | None
) -> str | None:
    """An active rollout's newest look, else its last decision's evidence."""
    if record.active:
        looks = manager.looks(record.id, record.step_index)
        if looks:
            return look_verdict(looks[-1])
    return None if evidence is None else str(evidence.get("verdict"))


def rows(manager: Manager, visible: Callable[[str], bool], now: float) -> list[Row]:
    """The overview's rows for the environments ``visible`` says the viewer may see."""
    plan_weights = weights(manager.engine)
    out: list[Row] = []
    for model, environment in pairs(manager.engine):
        if not visible(environment):
            continue
        record = manager.active(model, environment) or manager.latest(model, environment)
        evidence = last_evidence(manager.events(record.id)) if record is not None else None
        out.append(
            Row(
                model=model,
                environment=environment,
                serving_version=serving_version(manager.engine, model, environment),
                rollout=record,
                weight_pct=plan_weights.get((model, environment)),
                age_s=None if record is None else max(0.0, now - record.created_at),
                verdict=None if record is None else last_verdict(manager, record, evidence),
                alpha_spent=None if record is None else alpha_spent(evidence, record),
            )
        )
    return out
