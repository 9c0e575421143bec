"""Traffic plans: per (environment, model) the baseline, the canary and its weight, the shadow.

The manager is the only writer; routers poll :meth:`TrafficPlanStore.list` and apply a plan
whole. Every write bumps the plan's ``generation`` so a router can tell it has the newest one.

A plan also says which release each arm serves (:meth:`TrafficPlan.release_of`), so a reply can
name it: the baseline's is ``baseline_release_id``, the id of the release record that made the
baseline version current in this environment (the newest one that succeeded with that version;
the manager writes it in the transaction that records the release). A candidate under rollout
has no release record until its rollout finishes, so the canary's (and a shadow candidate's)
release is ``rollout:<rollout_id>`` (:attr:`TrafficPlan.canary_release`); the record written
when that rollout ends carries the same ``rollout_id``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, select

from rollout.store.schema import traffic_plans


@dataclass(frozen=True)
class TrafficPlan:
    environment: str
    model: str
    baseline_version: str
    canary_version: str | None = None
    canary_weight_pct: int = 0
    shadow_version: str | None = None
    shadow_fraction: float = 0.0
    sticky_key: str | None = None  # "header:x-user-id" or "field:user_id"; None = x-rollout-key
    rollout_id: str | None = None
    generation: int = 0
    baseline_release_id: int | None = None  # releases.id that made the baseline current

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight_pct <= 100:
            raise ValueError(f"canary_weight_pct must be 0..100, got {self.canary_weight_pct}")
        if not 0.0 <= self.shadow_fraction <= 1.0:
            raise ValueError(f"shadow_fraction must be 0..1, got {self.shadow_fraction}")
        if self.canary_weight_pct > 0 and self.canary_version is None:
            raise ValueError("a canary weight above 0 needs a canary_version")

    @property
    def canary_release(self) -> str | None:
        """``rollout:<rollout_id>`` while a rollout stages or serves a candidate, else None."""
        if self.rollout_id is None or (self.canary_version is None and self.shadow_version is None):
            return None
        return f"rollout:{self.rollout_id}"

    def release_of(self, version: str) -> str | None:
        """The release serving ``version`` in this plan: the baseline's release id (as text), the
        candidate's :attr:`canary_release`; None when unknown or not one of the plan's versions."""
        if version == self.baseline_version:
            return str(self.baseline_release_id) if self.baseline_release_id is not None else None
        if version in (self.canary_version, self.shadow_version):
            return self.canary_release
        return None

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version this plan needs loaded, baseline first."""
        out = [self.baseline_version]
        for version in (self.canary_version, self.shadow_version):
            if version is not None and version not in out:
                out.append(version)
        return tuple(out)


class TrafficPlanStore:
    """SQL-backed plans. Writes can join a caller's transaction by passing ``conn``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, environment: str, model: str) -> TrafficPlan | None:
        with self.engine.connect() as conn:
            return self.get_in(conn, environment, model)

    def get_in(self, conn: Connection, environment: str, model: str) -> TrafficPlan | None:
        row = conn.execute(
            select(traffic_plans).where(
                traffic_plans.c.environment == environment, traffic_plans.c.model == model
            )
        ).first()
        return _from_row(row._mapping) if row is not None else None

    def list(self, environment: str | None = None) -> list[TrafficPlan]:
        query = select(traffic_plans).order_by(traffic_plans.c.environment, traffic_plans.c.model)
        if environment is not None:
            query = query.where(traffic_plans.c.environment == environment)
        with self.engine.connect() as conn:
            return [_from_row(row._mapping) for row in conn.execute(query)]

    def put(self, plan: TrafficPlan, conn: Connection | None = None) -> TrafficPlan:
        """Write ``plan`` with the next generation; returns the plan as stored."""
        if conn is None:
            with self.engine.begin() as own:
                return self.put(plan, own)
        current = self.get_in(conn, plan.environment, plan.model)
        stored = replace(plan, generation=(current.generation if current else 0) + 1)
        values = {
            "baseline_version": stored.baseline_version,
            "canary_version": stored.canary_version,
            "canary_weight_pct": stored.canary_weight_pct,
            "shadow_version": stored.shadow_version,
            "shadow_fraction": stored.shadow_fraction,
            "sticky_key": stored.sticky_key,
            "rollout_id": stored.rollout_id,
            "generation": stored.generation,
            "baseline_release_id": stored.baseline_release_id,
            "updated_at": time.time(),
        }
        if current is None:
            conn.execute(
                traffic_plans.insert().values(
                    environment=plan.environment, model=plan.model, **values
                )
            )
        else:
            conn.execute(
                traffic_plans.update()
                .where(
                    traffic_plans.c.environment == plan.environment,
                    traffic_plans.c.model == plan.model,
                )
                .values(**values)
            )
        return stored


def _from_row(row: object) -> TrafficPlan:
    m = dict(row)  # type: ignore[call-overload]
    return TrafficPlan(
        environment=m["environment"],
        model=m["model"],
        baseline_version=m["baseline_version"],
        canary_version=m["canary_version"],
        canary_weight_pct=int(m["canary_weight_pct"]),
        shadow_version=m["shadow_version"],
        shadow_fraction=float(m["shadow_fraction"]),
        sticky_key=m["sticky_key"],
        rollout_id=m["rollout_id"],
        generation=int(m["generation"]),
        baseline_release_id=(
            int(m["baseline_release_id"]) if m["baseline_release_id"] is not None else None
        ),
    )
