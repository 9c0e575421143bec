""":class:`SqlPlanStore`: traffic plans in the store's ``traffic_plans`` table.

The :class:`~contract.plans.PlanStore` of the SQL store. The manager writes a plan inside the
transaction that saves its decision (:meth:`SqlPlanStore.put_in`); routers only :meth:`list`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import Connection, Engine, RowMapping, select

from contract.clock import SYSTEM_CLOCK
from contract.plans import TrafficPlan
from contract.sql.schema import traffic_plans


class SqlPlanStore:
    def __init__(self, engine: Engine, *, now: Callable[[], float] = SYSTEM_CLOCK.time) -> None:
        self.engine = engine
        self.now = now

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

    def put(self, plan: TrafficPlan) -> TrafficPlan:
        """Write ``plan`` with the next generation in a transaction of its own."""
        with self.engine.begin() as conn:
            return self.put_in(conn, plan)

    def put_in(self, conn: Connection, plan: TrafficPlan) -> TrafficPlan:
        """Write ``plan`` with the next generation in the caller's transaction."""
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
            "updated_at": self.now(),
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


def _from_row(row: RowMapping) -> TrafficPlan:
    return TrafficPlan(
        environment=row["environment"],
        model=row["model"],
        baseline_version=row["baseline_version"],
        canary_version=row["canary_version"],
        canary_weight_pct=int(row["canary_weight_pct"]),
        shadow_version=row["shadow_version"],
        shadow_fraction=float(row["shadow_fraction"]),
        sticky_key=row["sticky_key"],
        rollout_id=row["rollout_id"],
        generation=int(row["generation"]),
        baseline_release_id=(
            int(row["baseline_release_id"]) if row["baseline_release_id"] is not None else None
        ),
    )
